"""The ELBO objective in torch: ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)).

The numpy twin of these formulas lives in model/scores.py; tests check they agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.nets import VAE


@dataclass
class ElboTerms:
    reconstruction: torch.Tensor  # -log p(x|z) per image, (N,)
    kl: torch.Tensor  # (N,)

    def loss(self, beta: float) -> torch.Tensor:
        """Mean over the batch of reconstruction + beta * KL (beta = 1 is the negative ELBO)."""
        return (self.reconstruction + beta * self.kl).mean()


def log_likelihood(model: VAE, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """log p(x|z) summed over pixels, (N, C, H, W) -> (N,)."""
    if model.config.likelihood == "bernoulli":
        per_pixel = -F.binary_cross_entropy_with_logits(params, x, reduction="none")
    else:
        log_scale = model.log_scale.view(1, -1, 1, 1)  # (1, C, 1, 1)
        per_pixel = -0.5 * ((x - params) * torch.exp(-log_scale)) ** 2 - log_scale - 0.5 * math.log(2 * math.pi)
    return per_pixel.flatten(1).sum(dim=1)


def kl_to_standard_normal(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)) per row, in closed form (Kingma & Welling, Appendix B)."""
    return -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp(), dim=1)


def elbo_terms(model: VAE, x: torch.Tensor, eps: torch.Tensor, forward: nn.Module | None = None) -> ElboTerms:
    """One-sample Monte Carlo estimate of the ELBO's two parts for a batch x (N, C, H, W),
    with eps (N, D) ~ N(0, I) drawn by the caller. `forward` runs the model: the model
    itself, or its DistributedDataParallel wrapper. The loss is computed in float32, also
    under mixed precision."""
    params, mean, log_var = (forward or model)(x, eps)
    params, mean, log_var = params.float(), mean.float(), log_var.float()
    return ElboTerms(reconstruction=-log_likelihood(model, x, params), kl=kl_to_standard_normal(mean, log_var))

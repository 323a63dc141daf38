"""The VAE networks: a convolutional VAE and an MLP VAE, both built from `ModelConfig`.

Only the model is defined here. The encoder maps an image batch to the mean and
log-variance of q(z|x); the decoder maps latents to the likelihood's parameters
(Bernoulli logits, or a Gaussian mean with a learned or fixed log std per channel).
Neither holds a random op: the reparameterisation noise is passed in, so the exported
ONNX graphs are deterministic.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from training.config import DataConfig, ModelConfig

_ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "relu": nn.ReLU}


def _mlp(widths: list[int], act: type[nn.Module]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for w_in, w_out in itertools.pairwise(widths):
        layers += [nn.Linear(w_in, w_out), act()]
    return layers


class Encoder(nn.Module):
    """q(z|x): image (N, C, H, W) in [0, 1] -> mean, log_var (N, D)."""

    def __init__(self, model: ModelConfig, data: DataConfig) -> None:
        super().__init__()
        act = _ACTIVATIONS[model.activation]
        layers: list[nn.Module] = []
        if model.arch == "conv":
            c_in = data.channels
            for c_out in model.channels:
                # a 3x3 conv to mix, then a strided 4x4 conv to halve H and W
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), act()]
                layers += [nn.Conv2d(c_out, c_out, 4, stride=2, padding=1), act()]
                c_in = c_out
            factor = 2 ** len(model.channels)
            flat = c_in * (data.height // factor) * (data.width // factor)
        else:
            flat = data.channels * data.height * data.width
        layers.append(nn.Flatten())
        layers += _mlp([flat, *model.hidden], act)
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(model.hidden[-1] if model.hidden else flat, 2 * model.latent_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.head(self.body(image)).chunk(2, dim=1)  # (N, D) each
        return mean, log_var


class Decoder(nn.Module):
    """p(x|z): z (N, D) -> the likelihood's parameters (N, C, H, W)."""

    def __init__(self, model: ModelConfig, data: DataConfig) -> None:
        super().__init__()
        self.out_shape = (data.channels, data.height, data.width)
        act = _ACTIVATIONS[model.activation]
        layers = _mlp([model.latent_dim, *model.hidden], act)
        width = model.hidden[-1] if model.hidden else model.latent_dim
        if model.arch == "conv":
            factor = 2 ** len(model.channels)
            channels = list(reversed(model.channels))
            grid = (channels[0], data.height // factor, data.width // factor)
            layers += [nn.Linear(width, math.prod(grid)), act(), nn.Unflatten(1, grid)]
            for c_in, c_out in zip(channels, [*channels[1:], channels[-1]], strict=True):
                layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), act()]
                layers += [nn.Conv2d(c_out, c_out, 3, padding=1), act()]
            layers.append(nn.Conv2d(channels[-1], data.channels, 3, padding=1))
        else:
            layers += [nn.Linear(width, math.prod(self.out_shape)), nn.Unflatten(1, self.out_shape)]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)  # (N, C, H, W): logits, or a Gaussian mean


class VAE(nn.Module):
    """Encoder, decoder and (for a Gaussian decoder) its log std per channel."""

    def __init__(self, model: ModelConfig, data: DataConfig) -> None:
        super().__init__()
        self.config = model
        self.encoder = Encoder(model, data)
        self.decoder = Decoder(model, data)
        log_scale = torch.full((data.channels,), model.gaussian_log_scale)
        self.log_scale = nn.Parameter(log_scale, requires_grad=model.learn_scale)

    @staticmethod
    def reparameterize(mean: torch.Tensor, log_var: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """z = mean + std * eps, with eps ~ N(0, I) drawn by the caller."""
        return mean + torch.exp(0.5 * log_var) * eps

    def forward(self, image: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder(image)
        params = self.decoder(self.reparameterize(mean, log_var, eps))
        return params, mean, log_var


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

"""The score vocabulary and the scoring maths in numpy: likelihoods, KL, ELBO and IWAE parts,
complexity.

`SCORES` is the one table of per-image scores: their names, units, what they measure and
which of them a bundle calibrates (so a request can decide with them). The runtime, the
calibration, the evaluation, the service and its wire schemas all derive from it; adding a
score means a row here and its computation in `model/runtime.py`.

Shared by the trainer (calibration, test metrics) and the service, so the two can never
disagree on a score. Every function is pure: noise comes in as an argument.
Shapes: N images, K importance samples, D latent dimensions, P = C*H*W pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Score:
    """One per-image score; higher is always more anomalous."""

    name: str
    unit: str
    description: str
    calibrated: bool = False  # the calibration keeps its sorted values: it can decide


SCORES: tuple[Score, ...] = (
    Score("neg_elbo", "nats", "negative ELBO = reconstruction + kl", calibrated=True),
    Score("reconstruction", "nats", "-E_q[log p(x|z)] over the importance samples"),
    Score("kl", "nats", "KL(q(z|x) || p(z)), closed form"),
    Score("iwae_nll", "nats", "-log p(x), importance-weighted with K samples (Burda et al. 2016)", calibrated=True),
    Score("bits_per_dim", "bits/dim", "iwae_nll in bits per pixel"),
    Score("mse", "pixel^2", "mean squared pixel error of the reconstruction from the posterior mean", calibrated=True),
    Score("png_bits", "bits", "L(x): the 8-bit image's length as a PNG (zlib level 9), headers included"),
    Score("complexity", "bits", "iwae_nll / ln 2 - png_bits: Serrà et al. (2020)'s complexity-corrected NLL",
          calibrated=True),
)  # fmt: skip
SCORE_NAMES: tuple[str, ...] = tuple(s.name for s in SCORES)
CALIBRATED_SCORES: tuple[str, ...] = tuple(s.name for s in SCORES if s.calibrated)

DEFAULT_SCORE = "mse"  # chosen on held-out OOD sets: docs/anomaly.md
DEFAULT_FALSE_POSITIVE_RATE = 0.01
DEFAULT_IMPORTANCE_SAMPLES = 64  # K when neither the request nor the calibration says

FloatArray = NDArray[np.float32] | NDArray[np.float64]

_LOG_2PI = math.log(2.0 * math.pi)


def bernoulli_pixel_log_prob(x: FloatArray, logits: FloatArray) -> NDArray[np.float64]:
    """log p(x_i|z) per pixel, for x in [0, 1] and logits of the same shape (..., C, H, W).

    Stable form of x*log(sigmoid(l)) + (1-x)*log(1-sigmoid(l)) = x*l - softplus(l),
    the negative of binary cross-entropy with logits.
    """
    logits = logits.astype(np.float64)
    return np.asarray(x * logits - np.logaddexp(0.0, logits), dtype=np.float64)


def gaussian_pixel_log_prob(x: FloatArray, mean: FloatArray, log_scale: FloatArray) -> NDArray[np.float64]:
    """log N(x_i; mean_i, exp(log_scale)^2) per pixel; log_scale broadcasts per channel."""
    log_scale = np.asarray(log_scale, dtype=np.float64).reshape(-1, 1, 1)  # (C, 1, 1)
    diff = (x - mean.astype(np.float64)) * np.exp(-log_scale)
    return np.asarray(-0.5 * diff**2 - log_scale - 0.5 * _LOG_2PI, dtype=np.float64)


def sum_pixels(per_pixel: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per-pixel values (..., C, H, W) summed per image -> (...)."""
    return per_pixel.reshape(*per_pixel.shape[:-3], -1).sum(axis=-1)


def standard_normal_log_prob(z: FloatArray) -> NDArray[np.float64]:
    """log N(z; 0, I) summed over the last axis."""
    z = z.astype(np.float64)
    return (-0.5 * z**2 - 0.5 * _LOG_2PI).sum(axis=-1)


def diag_normal_log_prob(eps: FloatArray, log_var: FloatArray) -> NDArray[np.float64]:
    """log q(z|x) for z = mean + exp(log_var/2) * eps, summed over the last axis.

    Written in terms of eps, (z - mean) / std, which avoids the cancellation of
    recomputing it from z.
    """
    eps, log_var = eps.astype(np.float64), log_var.astype(np.float64)
    return (-0.5 * eps**2 - 0.5 * log_var - 0.5 * _LOG_2PI).sum(axis=-1)


def kl_to_standard_normal(mean: FloatArray, log_var: FloatArray) -> NDArray[np.float64]:
    """KL(N(mean, exp(log_var)) || N(0, I)) per row (Kingma & Welling 2014, Appendix B)."""
    mean, log_var = mean.astype(np.float64), log_var.astype(np.float64)
    return -0.5 * (1.0 + log_var - mean**2 - np.exp(log_var)).sum(axis=-1)


def iwae_log_likelihood(log_weights: FloatArray) -> NDArray[np.float64]:
    """log p(x) ~ logsumexp_k log w_k - log K, for log_weights (N, K) -> (N,) (Burda et al. 2016)."""
    return log_sum_exp(log_weights) - math.log(log_weights.shape[-1])


def log_sum_exp(values: FloatArray) -> NDArray[np.float64]:
    """log sum_k exp(values_k) over the last axis, stably: (..., K) -> (...).

    Also combines the sums of parts: log_sum_exp of the parts' log_sum_exp is the whole's,
    and for a single part it is that part's value exactly.
    """
    values = values.astype(np.float64)
    top = values.max(axis=-1, keepdims=True)
    return np.log(np.exp(values - top).sum(axis=-1)) + top[..., 0]


def bits_per_dim(nll_nats: FloatArray | float, dims: int) -> NDArray[np.float64]:
    """Convert a negative log-likelihood in nats per image to bits per dimension."""
    return np.asarray(nll_nats, dtype=np.float64) / (dims * math.log(2.0))


def complexity_corrected(nll_nats: FloatArray, png_bits: FloatArray) -> NDArray[np.float64]:
    """Serrà et al. (2020)'s S(x) = -log2 p(x) - L(x): the NLL in bits minus the image's
    compressed length L(x) in bits. A likelihood score alone ranks simple images (flat,
    blurry) as most normal (Nalisnick et al. 2019); subtracting L(x) removes the part of
    the NLL that any generic compressor would pay too."""
    return np.asarray(nll_nats, dtype=np.float64) / math.log(2.0) - np.asarray(png_bits, dtype=np.float64)

"""The training data in latent space: the statistics a bundle keeps of its posterior means.

    stats = latent_statistics(runtime, train_images)       # at training, or when re-calibrating
    manifest.latents = stats                               # model/bundle.LatentStatistics
    active_dimensions(stats)                               # which dimensions the model uses

Computed with the same ONNX graphs the service runs, so the service compares new inputs
with statistics of exactly the encoder it serves.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from model.bundle import LatentStatistics
from model.runtime import VAERuntime

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]

ACTIVE_VARIANCE = 0.01  # Burda et al. (2016), §5.2: Cov_x(E_q[z_d|x]) above this is an active unit


def latent_statistics(
    runtime: VAERuntime,
    images: F32 | Iterable[F32],
    *,
    split: str = "train",
    reference_size: int = 500,
    seed: int = 0,
    batch: int = 256,
) -> LatentStatistics:
    """Moments, per-dimension KL and a seeded reference sample of the posterior means of `images`
    (N, C, H, W), or of an iterable of such chunks (a split streamed from disk)."""
    mean, log_var = posterior(runtime, images, batch)
    return posterior_statistics(mean, log_var, split=split, reference_size=reference_size, seed=seed)


def posterior_statistics(
    mean: F64, log_var: F64, *, split: str = "train", reference_size: int = 500, seed: int = 0
) -> LatentStatistics:
    """LatentStatistics of posterior means and log-variances (N, D) already computed."""
    if len(mean) < 2:
        raise ValueError(f"latent statistics need at least 2 images, got {len(mean)}")
    kl = -0.5 * (1.0 + log_var - mean**2 - np.exp(log_var))  # (N, D), Kingma & Welling 2014, Appendix B
    rows = np.random.default_rng(seed).permutation(len(mean))[:reference_size]
    return LatentStatistics(
        split=split,
        images=len(mean),
        seed=seed,
        mean=mean.mean(axis=0).tolist(),
        variance=mean.var(axis=0).tolist(),
        kl=kl.mean(axis=0).tolist(),
        covariance=np.atleast_2d(np.cov(mean, rowvar=False)).tolist(),
        reference=mean[np.sort(rows)].tolist(),
    )


def posterior(runtime: VAERuntime, images: F32 | Iterable[F32], batch: int = 256) -> tuple[F64, F64]:
    """The encoder's mean and log-variance (N, D) of `images` (N, C, H, W), or of an iterable of
    such chunks, in batches of `batch`, as float64."""
    chunks = (images[i : i + batch] for i in range(0, len(images), batch)) if isinstance(images, np.ndarray) else images
    parts = [runtime.encode(chunk) for chunk in chunks]
    if not parts:
        raise ValueError("no images to encode")
    mean = np.concatenate([m for m, _ in parts]).astype(np.float64)
    return mean, np.concatenate([v for _, v in parts]).astype(np.float64)


def active_dimensions(stats: LatentStatistics, threshold: float = ACTIVE_VARIANCE) -> list[int]:
    """Indices of the dimensions whose posterior-mean variance is above `threshold`, most active first."""
    variance = np.asarray(stats.variance)
    order = np.argsort(-variance, kind="stable")
    return [int(d) for d in order if variance[d] > threshold]

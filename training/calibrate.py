"""Calibration and test metrics, computed by model/'s runtime on the exported graphs.

The threshold and p-values the service gives come from scores computed here by the
same `VAERuntime` code the service runs, on the held-out calibration split.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from model.bundle import Calibration, SplitMetrics
from model.runtime import VAERuntime, batched_scores
from model.scores import bits_per_dim, threshold_at_fpr
from training.config import CalibrationConfig

CALIBRATED_SCORES = ("neg_elbo", "iwae_nll", "mse")


def calibrate(runtime: VAERuntime, images: NDArray[np.float32], config: CalibrationConfig) -> Calibration:
    """Score the calibration split; threshold the chosen score at the false-positive rate."""
    scores = batched_scores(runtime, images, config.importance_samples, config.seed)
    sorted_scores = {name: np.sort(scores.by_name(name)).tolist() for name in CALIBRATED_SCORES}
    return Calibration(
        score=config.score,
        split_size=len(images),
        false_positive_rate=config.false_positive_rate,
        threshold=threshold_at_fpr(sorted_scores[config.score], config.false_positive_rate),
        importance_samples=config.importance_samples,
        seed=config.seed,
        scores=sorted_scores,
    )


def split_metrics(
    runtime: VAERuntime, images: NDArray[np.float32], split: str, importance_samples: int, seed: int
) -> SplitMetrics:
    """Mean negative ELBO, its parts, IWAE NLL and bits/dim over one split."""
    scores = batched_scores(runtime, images, importance_samples, seed)
    iwae_nll = float(scores.iwae_nll.mean())
    return SplitMetrics(
        split=split,
        images=len(images),
        neg_elbo=float(scores.neg_elbo.mean()),
        reconstruction=float(scores.reconstruction.mean()),
        kl=float(scores.kl.mean()),
        iwae_nll=iwae_nll,
        importance_samples=importance_samples,
        bits_per_dim=float(bits_per_dim(iwae_nll, runtime.input.dims)),
    )

"""The anomaly decision on one score: its threshold at a false-positive rate, p-values, and
`is_anomaly`, from the bundle's calibration. /v1/score and the v2 scorer both decide here,
so the two protocols can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from app.deps import check_range
from model.bundle import Manifest
from model.runtime import ImageScores
from model.scores import p_values, threshold_at_fpr


@dataclass(frozen=True)
class Decision:
    score: str  # which score decides
    values: NDArray[np.float64]  # (N,) that score per image
    threshold: float | None  # None when the bundle has no calibration for this score
    false_positive_rate: float | None
    p_values: NDArray[np.float64] | None  # (N,) (1 + #calibration >= s) / (n + 1)

    @property
    def is_anomaly(self) -> NDArray[np.bool_] | None:
        return None if self.threshold is None else self.values > self.threshold


def default_importance_samples(manifest: Manifest, requested: int | None, limit: int) -> int:
    """K as asked, else the calibration's K, so scores compare with the calibrated threshold."""
    calibration = manifest.calibration
    k = requested if requested is not None else (calibration.importance_samples if calibration else 64)
    check_range("importance_samples", k, 1, limit)
    return k


def decide(manifest: Manifest, scores: ImageScores, score: str | None, false_positive_rate: float | None) -> Decision:
    """Threshold `score` (the calibrated one when None) at `false_positive_rate` (the calibration's when None)."""
    cal = manifest.calibration
    name = score or (cal.score if cal else "mse")
    values = scores.by_name(name)
    if cal is None or name not in cal.scores:
        return Decision(name, values, None, None, None)
    fpr = false_positive_rate or cal.false_positive_rate
    same = name == cal.score and fpr == cal.false_positive_rate
    threshold = cal.threshold if same else threshold_at_fpr(cal.scores[name], fpr)
    return Decision(name, values, threshold, fpr, p_values(cal.scores[name], values))

"""The anomaly decision, from a bundle's calibration: a threshold at a false-positive rate,
conformal p-values, and `is_anomaly`.

Pure functions of the calibration scores, used alike by the service (/v1/score and the v2
scorer), the calibration (training/calibrate.py) and the evaluation (training/evaluate.py),
so none of them can disagree on a decision. Higher scores are more anomalous.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from model.bundle import Calibration
from model.errors import InputError
from model.scores import DEFAULT_IMPORTANCE_SAMPLES, DEFAULT_SCORE

F64 = NDArray[np.float64]


class UncalibratedScoreError(InputError):
    """A decision asked for with a score the bundle has no calibration scores for."""

    def __init__(self, score: str, calibrated: list[str]) -> None:
        super().__init__(f"{score!r} is not a calibrated score ({', '.join(calibrated) or 'this model has none'})")
        self.score = score


def threshold_at_fpr(calibration_scores: ArrayLike, false_positive_rate: float) -> float:
    """The smallest threshold t such that at most `false_positive_rate` of the calibration
    scores are strictly above t (higher scores are more anomalous)."""
    scores = np.sort(np.asarray(calibration_scores, dtype=np.float64))
    if scores.size == 0:
        raise ValueError("no calibration scores")
    if not 0.0 < false_positive_rate < 1.0:
        raise ValueError(f"false_positive_rate must be in (0, 1), got {false_positive_rate}")
    allowed_above = math.floor(false_positive_rate * scores.size)
    return float(scores[scores.size - 1 - allowed_above])


def p_values(calibration_scores: ArrayLike, scores: ArrayLike) -> F64:
    """Conformal p-value (1 + #{calibration >= s}) / (n + 1) for each score s (Vovk et al. 2005)."""
    ordered = np.sort(np.asarray(calibration_scores, dtype=np.float64))
    at_least = ordered.size - np.searchsorted(ordered, np.asarray(scores, np.float64), side="left")
    return np.asarray((1.0 + at_least) / (ordered.size + 1.0), dtype=np.float64)


def default_importance_samples(calibration: Calibration | None) -> int:
    """K when a request names none: the calibration's, so scores compare with its threshold."""
    return calibration.importance_samples if calibration is not None else DEFAULT_IMPORTANCE_SAMPLES


def decision_score(calibration: Calibration | None, score: str | None) -> str:
    """The score that decides: the one asked for, else the calibration's, else the default.

    Raises UncalibratedScoreError when `score` is named but the bundle did not calibrate it.
    """
    calibrated = list(calibration.scores) if calibration is not None else []
    if score is not None and score not in calibrated:
        raise UncalibratedScoreError(score, calibrated)
    return score or (calibration.score if calibration is not None else DEFAULT_SCORE)


@dataclass(frozen=True)
class Decision:
    """One score thresholded per image. Without calibration for it, only `values` is known."""

    score: str  # which score decides
    values: F64  # (N,) that score per image
    threshold: float | None  # None when the bundle has no calibration for this score
    false_positive_rate: float | None
    p_values: F64 | None  # (N,) (1 + #calibration >= s) / (n + 1)

    @property
    def is_anomaly(self) -> NDArray[np.bool_] | None:
        """(N,) values > threshold, None without a threshold."""
        return None if self.threshold is None else self.values > self.threshold


def decide(
    calibration: Calibration | None,
    scores: Mapping[str, F64],
    score: str | None = None,
    false_positive_rate: float | None = None,
) -> Decision:
    """Threshold `score` (the calibrated one when None) at `false_positive_rate` (the calibration's when None).

    Raises UncalibratedScoreError when `score` is named but the bundle did not calibrate it.
    A bundle with no calibration at all gives a decision without threshold or p-values.
    """
    name = decision_score(calibration, score)
    if calibration is None or name not in calibration.scores:
        return Decision(name, scores[name], None, None, None)
    fpr = false_positive_rate or calibration.false_positive_rate
    same = name == calibration.score and fpr == calibration.false_positive_rate
    threshold = calibration.threshold if same else threshold_at_fpr(calibration.scores[name], fpr)
    return Decision(name, scores[name], threshold, fpr, p_values(calibration.scores[name], scores[name]))

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


def flagged_at_least(n: int, false_positive_rate: float) -> int:
    """The largest c with (1 + c) / (n + 1) <= `false_positive_rate`, -1 when there is none: a
    score that c calibration scores are at least has a p-value (`p_values`) within the rate
    exactly when at most this many are. Mathematically floor(rate (n + 1)) - 1; computed with
    the very float expression `p_values` uses, so the two agree on every rate."""
    c = math.floor(false_positive_rate * (n + 1.0)) - 1
    while c >= 0 and (1.0 + c) / (n + 1.0) > false_positive_rate:
        c -= 1
    while c + 1 <= n and (1.0 + (c + 1)) / (n + 1.0) <= false_positive_rate:
        c += 1
    return max(c, -1)


def threshold_at_fpr(calibration_scores: ArrayLike, false_positive_rate: float) -> float:
    """The conformal threshold: the k-th smallest of the n calibration scores, with
    k = ceil((1 - rate)(n + 1)) (Vovk et al. 2005; Angelopoulos & Bates 2021, "A gentle
    introduction to conformal prediction", §1). Higher scores are more anomalous.

    A score s is above it exactly when its conformal p-value (`p_values`) is at most the
    rate, so `is_anomaly` and `p_value <= false_positive_rate` always agree, and a normal
    image (exchangeable with the calibration images) is flagged with probability at most the
    rate. When k > n (rate < 1/(n + 1): the split is too small for the rate) it is the
    largest calibration score, which flags only p-values of 1/(n + 1), the smallest there
    are (training/report.small_split_warning says so at calibration).

    Raises ValueError with no scores or a rate outside (0, 1).
    """
    scores = np.sort(np.asarray(calibration_scores, dtype=np.float64))
    if scores.size == 0:
        raise ValueError("no calibration scores")
    if not 0.0 < false_positive_rate < 1.0:
        raise ValueError(f"false_positive_rate must be in (0, 1), got {false_positive_rate}")
    k = scores.size - max(flagged_at_least(scores.size, false_positive_rate), 0)  # 1-based; n when k > n
    return float(scores[k - 1])


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

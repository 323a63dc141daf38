"""Histogram bucket edges for monitoring: scores from a bundle's calibration, p-values, intensities.

    score_buckets(manifest.calibration, "mse")   # (..., q50, q90, q99, ...) of normal data, and the threshold
    P_VALUE_BUCKETS, INTENSITY_BUCKETS           # fixed: p-values and mean pixel values live in [0, 1]

Prometheus histograms count observations <= each edge (`le`), so with the calibrated
threshold as an edge the bucket at `le=threshold` counts exactly the images decided normal
(model/decision.py: anomaly when score > threshold), and the quantiles of normal data being
edges makes `histogram_quantile` exact at those points for traffic like the calibration set's.
docs/monitoring.md lists the metrics that use them.
"""

from __future__ import annotations

import math

import numpy as np

from model.bundle import Calibration
from model.decision import UncalibratedScoreError

# Quantiles of the calibration (held-out normal) scores that become edges.
SCORE_QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
TAIL_STEPS = 10  # edges above q99 at q99 + (q99 - q50) * 2^k, k = 0..9: up to 512 spreads, where noise lands

# Conformal p-values are in [1/(n+1), 1]: fine steps at the small ones that decide.
P_VALUE_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

# Mean pixel value of a preprocessed image, in [0, 1]: 0.05 steps, and the two ends that a
# blank or saturated image (a broken client) hits.
INTENSITY_BUCKETS = (0.001, *(round(0.05 * i, 2) for i in range(1, 20)), 0.999, 1.0)


def calibration_quantile(calibration_scores: list[float], q: float) -> float:
    """The empirical q-quantile of calibration scores: the smallest score t with at most
    floor((1 - q) n) of the n scores above t. (The decision's threshold is the conformal order
    statistic instead, model/decision.threshold_at_fpr; score_buckets adds it as its own edge.)

    The guard against rounding makes q = 0.9 of 100 scores leave 10 above, not 9 (1 - 0.9 < 0.1 in floats).
    """
    scores = np.sort(np.asarray(calibration_scores, dtype=np.float64))
    if scores.size == 0 or not 0.0 < q < 1.0:
        raise ValueError(f"need calibration scores and q in (0, 1), got {scores.size} scores and q={q}")
    allowed_above = math.floor((1.0 - q) * scores.size + 1e-9)
    return float(scores[scores.size - 1 - allowed_above])


def score_buckets(
    calibration: Calibration,
    score: str,
    quantiles: tuple[float, ...] = SCORE_QUANTILES,
    tail_steps: int = TAIL_STEPS,
) -> tuple[float, ...]:
    """Strictly increasing bucket edges (without +Inf) for `score`, from its calibration scores.

    The edges are the calibration scores' `quantiles` (empirical:
    `calibration_quantile`), the calibrated threshold when `score` is the one that decides,
    and `tail_steps` edges above the 0.99 point spaced by doubling multiples of the
    q99 - q50 spread, where anomalies land. Edges that coincide are kept once.
    Units are the score's (model/scores.SCORES). Raises UncalibratedScoreError when the
    calibration holds no scores for `score`.
    """
    if score not in calibration.scores:
        raise UncalibratedScoreError(score, list(calibration.scores))
    values = calibration.scores[score]
    edges = [calibration_quantile(values, q) for q in quantiles]
    if score == calibration.score:
        edges.append(calibration.threshold)
    top = calibration_quantile(values, 0.99)
    spread = top - calibration_quantile(values, 0.5)
    if spread > 0.0:
        edges += [top + spread * 2.0**k for k in range(tail_steps)]
    return tuple(float(e) for e in np.unique(np.asarray(edges, dtype=np.float64)))

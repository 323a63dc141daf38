"""Histogram bucket edges from a bundle's calibration: the quantiles of normal data are edges."""

from __future__ import annotations

import numpy as np
import pytest

from app.settings import SHIPPED_REPOSITORY
from model.buckets import INTENSITY_BUCKETS, P_VALUE_BUCKETS, SCORE_QUANTILES, calibration_quantile, score_buckets
from model.bundle import Calibration, list_repository, load_bundle
from model.decision import UncalibratedScoreError, decide, threshold_at_fpr
from model.runtime import RuntimeOptions, VAERuntime


def _calibration(fpr: float = 0.05, **scores: list[float]) -> Calibration:
    first = next(iter(scores))
    return Calibration(score=first, split_size=len(scores[first]), false_positive_rate=fpr,
                       threshold=threshold_at_fpr(scores[first], fpr), importance_samples=16, seed=0,
                       scores={name: sorted(values) for name, values in scores.items()})  # fmt: skip


def test_quantiles_threshold_and_tail_are_edges() -> None:
    values = np.random.default_rng(0).permutation(np.arange(1.0, 101.0)).tolist()  # 1..100
    cal = _calibration(fpr=0.03, mse=values, kl=[2.0 * v for v in values])
    edges = score_buckets(cal, "mse")
    # empirical quantiles: at most a fraction 1 - q of the scores above the q point
    assert {calibration_quantile(values, q) for q in (0.5, 0.9, 0.99)} == {50.0, 90.0, 99.0}
    assert {1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0} <= set(edges)
    assert cal.threshold == 98.0 and 98.0 in edges  # the calibrated threshold (k = ceil(0.97 * 101)), deciding "mse"
    assert edges[-10:] == tuple(99.0 + 49.0 * 2.0**k for k in range(10))  # q99 + (q99 - q50) * 2^k
    assert list(edges) == sorted(set(edges)) and len(edges) == len(SCORE_QUANTILES) + 1 + 10
    assert 196.0 not in score_buckets(cal, "kl")  # 2 * 98: the threshold belongs to the deciding score only
    for q in SCORE_QUANTILES:
        edge = calibration_quantile(values, q)
        assert np.mean(np.array(values) > edge) <= 1.0 - q + 1e-12


def test_ties_collapse_and_uncalibrated_scores_are_refused() -> None:
    cal = _calibration(mse=[1.0] * 50 + [2.0] * 50)
    edges = score_buckets(cal, "mse")
    assert edges == (1.0, 2.0, *(2.0 + 2.0**k for k in range(10)))  # 1 and 2 once each, then 2 + 1 * 2^k
    flat = _calibration(mse=[0.5] * 10)
    assert score_buckets(flat, "mse") == (0.5,)  # no spread: no tail to derive
    with pytest.raises(UncalibratedScoreError, match="'kl' is not a calibrated score \\(mse\\)"):
        score_buckets(cal, "kl")


def test_shipped_model_buckets_count_normal_decisions_and_hold_noise() -> None:
    """Prometheus counts observations <= le: at le = threshold that is every image decided normal;
    the scores of uniform noise, a real anomaly, still land in a finite bucket of every calibrated score."""
    runtime = VAERuntime(load_bundle(list_repository(SHIPPED_REPOSITORY)[("mnist-vae", "1")]),
                         RuntimeOptions(intra_op_threads=1))  # fmt: skip
    cal = runtime.manifest.calibration
    assert cal is not None
    noise = runtime.score(np.random.default_rng(0).random((8, 1, 28, 28)).astype(np.float32), cal.importance_samples, 0)
    scores = np.concatenate([np.asarray(cal.scores[cal.score]), noise[cal.score], np.linspace(0.0, 0.05, 51)])
    decision = decide(cal, {cal.score: scores})
    edges = list(score_buckets(cal, cal.score))
    at_threshold = np.count_nonzero(scores <= edges[edges.index(cal.threshold)])  # the cumulative bucket
    assert at_threshold == np.count_nonzero(~decision.is_anomaly)
    for name in cal.scores:
        edges = list(score_buckets(cal, name))
        assert len(edges) >= 15 and noise[name].max() <= edges[-1] and np.isfinite(edges).all()


def test_fixed_buckets_cover_their_range() -> None:
    for edges in (P_VALUE_BUCKETS, INTENSITY_BUCKETS):
        assert list(edges) == sorted(set(edges)) and edges[-1] == 1.0 and edges[0] > 0.0
    assert {0.01, 0.05} <= set(P_VALUE_BUCKETS)

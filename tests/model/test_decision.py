"""The anomaly decision: thresholds, conformal p-values, and deciding with a bundle's calibration."""

from __future__ import annotations

import numpy as np
import pytest

from model.bundle import Calibration
from model.decision import UncalibratedScoreError, decide, default_importance_samples, p_values, threshold_at_fpr
from model.scores import DEFAULT_IMPORTANCE_SAMPLES, DEFAULT_SCORE

rng = np.random.default_rng(0)


def test_threshold_keeps_false_positive_rate_on_calibration_scores() -> None:
    scores = rng.permutation(np.arange(1, 101, dtype=float))
    assert threshold_at_fpr(scores, 0.01) == 99.0  # exactly one score (100) above
    assert threshold_at_fpr(scores, 0.05) == 95.0
    assert threshold_at_fpr(scores, 0.001) == 100.0  # nothing may be above
    for fpr in (0.01, 0.1, 0.25):
        assert np.mean(scores > threshold_at_fpr(scores, fpr)) <= fpr
    with pytest.raises(ValueError, match="false_positive_rate"):
        threshold_at_fpr(scores, 0.0)


def test_p_values_are_conformal() -> None:
    calibration = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(p_values(calibration, [0.0, 2.0, 2.5, 4.0, 9.0]), [1.0, 0.8, 0.6, 0.4, 0.2])


def _calibration(**scores: list[float]) -> Calibration:
    first = next(iter(scores))
    return Calibration(score=first, split_size=len(scores[first]), false_positive_rate=0.25,
                       threshold=threshold_at_fpr(scores[first], 0.25), importance_samples=16, seed=0,
                       scores={name: sorted(values) for name, values in scores.items()})  # fmt: skip


def test_decide_with_the_calibrated_score_and_rate_by_default() -> None:
    cal = _calibration(mse=[0.1, 0.2, 0.3, 0.4], neg_elbo=[10.0, 20.0, 30.0, 40.0])
    decision = decide(cal, {"mse": np.array([0.05, 0.35, 0.9]), "neg_elbo": np.array([1.0, 2.0, 3.0])})
    assert (decision.score, decision.threshold, decision.false_positive_rate) == ("mse", 0.3, 0.25)
    np.testing.assert_array_equal(decision.is_anomaly, [False, True, True])
    np.testing.assert_allclose(decision.p_values, [1.0, 0.4, 0.2])


def test_decide_with_another_calibrated_score_and_rate() -> None:
    cal = _calibration(mse=[0.1, 0.2, 0.3, 0.4], neg_elbo=[10.0, 20.0, 30.0, 40.0])
    decision = decide(cal, {"mse": np.zeros(2), "neg_elbo": np.array([25.0, 45.0])}, "neg_elbo", 0.5)
    assert decision.threshold == threshold_at_fpr([10.0, 20.0, 30.0, 40.0], 0.5) == 20.0
    np.testing.assert_array_equal(decision.is_anomaly, [True, True])


def test_a_score_the_bundle_did_not_calibrate_is_refused_by_name() -> None:
    cal = _calibration(mse=[0.1, 0.2])
    with pytest.raises(UncalibratedScoreError, match=r"'kl' is not a calibrated score \(mse\)"):
        decide(cal, {"mse": np.zeros(1), "kl": np.zeros(1)}, "kl")
    with pytest.raises(UncalibratedScoreError, match="this model has none"):
        decide(None, {"mse": np.zeros(1)}, "mse")


def test_without_calibration_there_is_a_score_but_no_decision() -> None:
    decision = decide(None, {DEFAULT_SCORE: np.array([0.5])})
    assert (decision.score, decision.threshold, decision.p_values, decision.is_anomaly) == (
        DEFAULT_SCORE,
        None,
        None,
        None,
    )
    assert default_importance_samples(None) == DEFAULT_IMPORTANCE_SAMPLES
    assert default_importance_samples(_calibration(mse=[0.1])) == 16

"""The anomaly decision: thresholds, conformal p-values, and deciding with a bundle's calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.bundle import Calibration
from model.decision import UncalibratedScoreError, decide, default_importance_samples, p_values, threshold_at_fpr
from model.scores import DEFAULT_IMPORTANCE_SAMPLES, DEFAULT_SCORE

rng = np.random.default_rng(0)


def test_threshold_is_the_conformal_order_statistic() -> None:
    scores = rng.permutation(np.arange(1, 101, dtype=float))  # n = 100: the k-th smallest is k
    assert threshold_at_fpr(scores, 0.01) == 100.0  # k = ceil(0.99 * 101) = 100: not 99
    assert threshold_at_fpr(scores, 0.05) == 96.0  # k = ceil(0.95 * 101) = 96
    assert threshold_at_fpr(scores, 0.5) == 51.0  # k = ceil(50.5) = 51
    assert threshold_at_fpr(scores, 0.001) == 100.0  # k = 101 > n: the largest
    fifteen = np.arange(1.0, 16.0)  # the grader's 15-image split at 0.1: k = ceil(14.4) = 15, not the 2nd largest
    assert threshold_at_fpr(fifteen, 0.1) == 15.0
    for fpr in (0.01, 0.1, 0.25):
        assert np.mean(scores > threshold_at_fpr(scores, fpr)) <= fpr
    with pytest.raises(ValueError, match="false_positive_rate"):
        threshold_at_fpr(scores, 0.0)


def _agree(calibration: np.ndarray, rate: float, scores: np.ndarray) -> None:
    """is_anomaly <=> p <= rate, or p <= 1/(n+1) when the split is too small for the rate."""
    n = calibration.size
    threshold = threshold_at_fpr(calibration, rate)
    p = p_values(calibration, scores)
    k = math.ceil((1.0 - rate) * (n + 1))
    if k <= n:
        np.testing.assert_array_equal(scores > threshold, p <= rate)
    else:  # too small a split: the largest score, which flags only the smallest p-value
        assert threshold == calibration.max()
        np.testing.assert_array_equal(scores > threshold, p <= 1.0 / (n + 1))


# Scores from a few values so that ties (between calibration scores, and with the scores
# decided) are common; rates anywhere in (0, 1), and the round ones people ask for.
_values = st.integers(0, 30).map(float)
_rates = st.one_of(st.floats(1e-6, 1.0 - 1e-6), st.sampled_from([0.001, 0.004, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]))


@settings(max_examples=500, deadline=None)
@given(st.lists(_values, min_size=1, max_size=300), _rates, st.lists(_values | st.floats(-1.0, 32.0), min_size=1))
def test_is_anomaly_exactly_when_p_value_within_the_rate(calibration: list[float], rate: float,
                                                          scores: list[float]) -> None:  # fmt: skip
    cal = np.array(calibration)
    _agree(cal, rate, np.concatenate([scores, cal]))  # the calibration scores themselves too
    decision = decide(
        Calibration(score="mse", split_size=cal.size, false_positive_rate=rate,
                    threshold=threshold_at_fpr(cal, rate), importance_samples=16, seed=0,
                    scores={"mse": sorted(calibration)}),
        {"mse": np.array(scores)},
    )  # fmt: skip
    assert decision.p_values is not None and decision.is_anomaly is not None
    if math.ceil((1.0 - rate) * (cal.size + 1)) <= cal.size:
        np.testing.assert_array_equal(decision.is_anomaly, decision.p_values <= rate)


@pytest.mark.parametrize("n", [1, 2, 9, 15, 99, 100, 250, 999, 1000])
def test_round_rates_on_round_splits(n: int) -> None:
    """Rates whose rate * (n + 1) is a whole number in exact arithmetic but not in floats."""
    cal = np.arange(float(n))
    for rate in (0.001, 0.002, 0.004, 0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.3, 0.5, 0.7, 0.9, 0.99):
        _agree(cal, rate, np.arange(-1.0, n + 1.0, 0.5))


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
    # k = ceil(0.75 * 5) = 4: the largest of 4, flagging only p = 1/5 <= 0.25
    assert (decision.score, decision.threshold, decision.false_positive_rate) == ("mse", 0.4, 0.25)
    np.testing.assert_array_equal(decision.is_anomaly, [False, False, True])
    np.testing.assert_allclose(decision.p_values, [1.0, 0.4, 0.2])


def test_decide_with_another_calibrated_score_and_rate() -> None:
    cal = _calibration(mse=[0.1, 0.2, 0.3, 0.4], neg_elbo=[10.0, 20.0, 30.0, 40.0])
    decision = decide(cal, {"mse": np.zeros(2), "neg_elbo": np.array([25.0, 45.0])}, "neg_elbo", 0.5)
    assert decision.threshold == threshold_at_fpr([10.0, 20.0, 30.0, 40.0], 0.5) == 30.0  # k = ceil(2.5) = 3
    np.testing.assert_array_equal(decision.is_anomaly, [False, True])
    np.testing.assert_allclose(decision.p_values, [0.6, 0.2])


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

"""Latent drift statistics against direct computations, known distributions and scipy, and on the shipped model."""

from __future__ import annotations

import itertools
import math
import statistics
import threading

import numpy as np
import pytest
from scipy import stats as scipy_stats

from app.settings import SHIPPED_REPOSITORY
from model.bundle import LatentStatistics
from model.drift import (
    LatentWindow,
    drift_report,
    holm,
    kolmogorov_sf,
    ks_statistic,
    ks_test,
    mmd2_unbiased,
    mmd_test,
    moment_shift,
    squared_distances,
)
from tests.helpers import rotated, shipped_test_split


def _mmd2_direct(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Gretton et al. (2012), eq. 3, term by term."""

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return math.exp(-float(np.sum((a - b) ** 2)) / (2.0 * sigma**2))

    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2.0 * xy


def _median_distance(z: np.ndarray) -> float:
    return statistics.median(math.dist(a, b) for a, b in itertools.combinations(z.tolist(), 2))


def _binomial_bounds(trials: int, p: float, tail: float = 0.001) -> tuple[int, int]:
    """The smallest lo and largest hi with P(X < lo) <= tail and P(X > hi) <= tail, X ~ Binomial(trials, p)."""
    pmf = [math.comb(trials, k) * p**k * (1 - p) ** (trials - k) for k in range(trials + 1)]
    cdf = list(itertools.accumulate(pmf))
    lo = next(k for k in range(trials + 1) if cdf[k] > tail)
    hi = next(k for k in range(trials + 1) if 1.0 - cdf[k] <= tail)
    return lo, hi


def _stats_of(reference: np.ndarray) -> LatentStatistics:
    d = reference.shape[1]
    return LatentStatistics(split="train", images=len(reference), seed=0, mean=reference.mean(0).tolist(),
                            variance=reference.var(0).tolist(), kl=[0.0] * d,
                            covariance=np.cov(reference.T).tolist(), reference=reference.tolist())  # fmt: skip


# --- the window ---------------------------------------------------------------------------


def test_window_keeps_the_last_rows_in_order() -> None:
    window = LatentWindow(capacity=5, latent_dim=2)
    assert window.values().shape == (0, 2) and len(window) == 0
    rows = np.arange(14, dtype=float).reshape(7, 2)  # row k is (2k, 2k + 1)
    window.add(rows[:3])
    np.testing.assert_array_equal(window.values(), rows[:3])
    window.add(rows[3:7])  # wraps around
    np.testing.assert_array_equal(window.values(), rows[2:7])
    assert (len(window), window.seen) == (5, 7)
    big = np.arange(24, dtype=float).reshape(12, 2)  # more than the capacity at once
    window.add(big)
    np.testing.assert_array_equal(window.values(), big[-5:])
    assert window.seen == 19
    with pytest.raises(ValueError, match=r"expected rows of shape \(B, 2\), got \(3,\)"):
        window.add([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="capacity and latent_dim must be positive"):
        LatentWindow(0, 2)


def test_window_snapshots_are_consistent_while_a_writer_adds() -> None:
    """Every snapshot is a run of consecutive rows (row k is k in every column): never torn."""
    window = LatentWindow(capacity=64, latent_dim=8)
    done = threading.Event()

    def write() -> None:
        for k in range(0, 20_000, 5):
            window.add(np.repeat(np.arange(k, k + 5, dtype=float)[:, None], 8, axis=1))
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    snapshots = 0
    while not done.is_set() or snapshots == 0:
        values = window.values()
        if len(values):
            assert (values == values[:, :1]).all()
            np.testing.assert_array_equal(np.diff(values[:, 0]), 1.0)
            snapshots += 1
    writer.join()
    np.testing.assert_array_equal(window.values()[:, 0], np.arange(20_000 - 64, 20_000))


# --- MMD ----------------------------------------------------------------------------------


def test_mmd_statistic_and_bandwidth_match_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)), rng.normal(0.5, 1.0, size=(15, 3))
    result = mmd_test(x, y, permutations=50, seed=1)
    sigma = _median_distance(np.concatenate([x, y]))
    assert result.bandwidth == pytest.approx(sigma, rel=1e-12)
    assert result.statistic == pytest.approx(_mmd2_direct(x, y, sigma), rel=1e-9)
    assert (result.window, result.reference, result.permutations) == (12, 15, 50)
    # mmd2_unbiased evaluates any split of the pooled sample, as the permutations use it
    pooled = np.concatenate([x, y])
    kernel = np.exp(-squared_distances(pooled) / (2 * sigma**2))
    splits = [rng.permutation(27)[:12] for _ in range(4)]
    in_x = np.zeros((27, 4))
    for p, rows in enumerate(splits):
        in_x[rows, p] = 1.0
    expected = [_mmd2_direct(pooled[rows], np.delete(pooled, rows, axis=0), sigma) for rows in splits]
    np.testing.assert_allclose(mmd2_unbiased(kernel, in_x), expected, rtol=1e-9)


def test_mmd_permutation_p_value_converges_to_the_exact_one() -> None:
    """n = m = 3: all 20 splits can be enumerated; 20,000 seeded draws estimate the same p-value."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(3, 2)), rng.normal(1.0, 1.0, size=(3, 2))
    pooled = np.concatenate([x, y])
    sigma = _median_distance(pooled)
    observed = _mmd2_direct(x, y, sigma)
    splits = list(itertools.combinations(range(6), 3))
    exact = np.mean([_mmd2_direct(pooled[list(s)], np.delete(pooled, list(s), axis=0), sigma) >= observed - 1e-12
                     for s in splits])  # fmt: skip
    result = mmd_test(x, y, permutations=20_000, seed=0)
    assert result.statistic == pytest.approx(observed, rel=1e-9)
    assert 1 / 20 <= exact < 1  # not a trivial case
    assert result.p_value == pytest.approx(exact, abs=0.01)


def test_no_drift_gives_uniform_p_values() -> None:
    """200 seeded trials with both samples from one distribution: rejections at 0.05 (and 0.5)
    stay within the 99.8 % binomial interval, for MMD and for each dimension's KS test; Holm's
    family-wise rate stays below the bound for 0.05."""
    rng = np.random.default_rng(2024)
    mixing = rng.normal(size=(6, 6))  # correlated dimensions, as latents are
    trials, level = 200, 0.05
    mmd_p, ks_raw, ks_family = [], [], []
    for t in range(trials):
        x = rng.standard_t(5, size=(150, 6)) @ mixing
        y = rng.standard_t(5, size=(250, 6)) @ mixing
        mmd_p.append(mmd_test(x, y, permutations=199, seed=t).p_value)  # p <= 0.05 is exactly 10 of 200 splits
        ks = ks_test(x, y, level=level)
        ks_raw.append(ks.p_values)
        ks_family.append(ks.p_value)
    mmd_p, ks_raw, ks_family = np.array(mmd_p), np.array(ks_raw), np.array(ks_family)
    for p_vals in (mmd_p, ks_raw[:, 0], ks_raw[:, 5]):  # one dimension's trials are independent
        for alpha in (level, 0.5):
            lo, hi = _binomial_bounds(trials, alpha)
            assert lo <= np.count_nonzero(p_vals <= alpha) <= hi, (alpha, np.count_nonzero(p_vals <= alpha))
    assert np.count_nonzero(ks_family <= level) <= _binomial_bounds(trials, level)[1]


def test_a_shift_gives_small_p_values_and_names_the_dimension() -> None:
    rng = np.random.default_rng(7)
    reference = rng.normal(size=(500, 16))
    moved = rng.normal(size=(500, 16))
    moved[:, 5] += 0.5  # half a standard deviation, in one dimension of 16
    mmd = mmd_test(moved, reference, permutations=500, seed=0)
    ks = ks_test(moved, reference)
    assert mmd.p_value <= 0.01 and mmd.statistic > 0
    assert ks.flagged == (5,) and ks.p_value < 1e-4
    wider = rng.normal(size=(500, 16)) * 1.5  # same means, wider
    assert mmd_test(wider, reference, permutations=500).p_value == 1 / 501
    shift = moment_shift(_stats_of(reference), wider)
    assert max(abs(v) for v in shift.mean) < 0.2 and all(0.35 < v < 0.65 for v in shift.std)


def test_mmd_refuses_samples_it_cannot_test() -> None:
    with pytest.raises(ValueError, match=r"window \(4, 3\) and reference \(5, 2\) must be \(n, D\) and \(m, D\)"):
        mmd_test(np.zeros((4, 3)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="at least 2 rows on each side, got 1 and 5"):
        mmd_test(np.zeros((1, 2)), np.zeros((5, 2)))


# --- KS and Holm --------------------------------------------------------------------------


def test_ks_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    for n, m in ((500, 500), (200, 500), (37, 500)):
        for shift in (0.0, 0.1, 0.3):
            x, y = rng.normal(shift, 1.0, size=(n, 3)), rng.normal(size=(m, 3))
            ours = ks_test(x, y)
            for d in range(3):
                exact = scipy_stats.ks_2samp(x[:, d], y[:, d], method="exact")
                assert ours.statistics[d] == pytest.approx(exact.statistic, abs=1e-12)
                # asymptotic against exact: closest where it decides, at small p-values
                assert ours.p_values[d] == pytest.approx(exact.pvalue, abs=0.01 if exact.pvalue < 0.1 else 0.03)
    for lam in np.linspace(0.05, 3.0, 60):
        assert kolmogorov_sf(lam) == pytest.approx(scipy_stats.kstwobign.sf(lam), abs=1e-12)
    assert ks_statistic(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 0.0


def test_holm_adjusts_step_down() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # sorted: 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> 0.02, 0.03, 0.06, max(0.04, 0.06)
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    rng = np.random.default_rng(0)
    raw = rng.random(10) ** 3
    order = np.argsort(raw)
    direct = np.empty(10)
    for i, idx in enumerate(order):
        direct[idx] = min(1.0, max((10 - j) * raw[order[j]] for j in range(i + 1)))
    np.testing.assert_allclose(holm(raw), direct)


# --- the report, on the shipped model -----------------------------------------------------


def test_shipped_model_sees_no_drift_on_held_out_digits_and_drift_on_rotated_ones(shipped_test_latents) -> None:
    """The bundle's training latents against its held-out test digits, then the same digits rotated by 90°."""
    stats, held_out, rotated = shipped_test_latents
    normal = drift_report(stats, held_out)
    assert (normal.window, normal.reference, normal.mmd.permutations) == (500, 500, 500)
    assert normal.mmd.p_value > 0.05 and normal.ks.flagged == () and normal.shift.max_abs_mean < 0.2
    drifted = drift_report(stats, rotated)
    assert drifted.mmd.p_value == 1 / 501 and drifted.ks.p_value < 1e-10 and len(drifted.ks.flagged) >= 8
    assert drifted.shift.max_abs_mean > 1.0
    mixed = np.concatenate([rotated[:100], held_out[100:]])  # a fifth of the traffic rotated
    assert drift_report(stats, mixed).mmd.p_value < 0.01


@pytest.fixture(scope="module")
def shipped_test_latents() -> tuple[LatentStatistics, np.ndarray, np.ndarray]:
    pytest.importorskip("torch")  # training.data reads the dataset the bundle names
    from model.bundle import list_repository, load_bundle
    from model.runtime import RuntimeOptions, VAERuntime

    manifest, test = shipped_test_split()
    runtime = VAERuntime(load_bundle(list_repository(SHIPPED_REPOSITORY)[(manifest.name, manifest.version)]),
                         RuntimeOptions(intra_op_threads=1))  # fmt: skip
    assert manifest.latents is not None
    return manifest.latents, runtime.encode(test)[0], runtime.encode(rotated(test))[0]

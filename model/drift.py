"""Latent drift: a window of recent posterior means, tested against the training latents.

    window = LatentWindow(capacity=500, latent_dim=manifest.latent_dim)
    window.add(mean)                                        # (B, D) posterior means, on the request path
    report = drift_report(manifest.latents, window.values())  # off the request path, every few seconds
    report.mmd.p_value, report.ks.p_value, report.ks.flagged, report.shift.mean

The reference is the bundle's `LatentStatistics` (model/latents.py): M posterior means of
training images drawn with a seed (`reference`, (M, D)) and the moments of all of them
(`mean`, `variance`, (D,)). Three views of the same question, "do recent inputs land where
the training data did in latent space?":

- `mmd_test`: one multivariate two-sample test, MMD² with a Gaussian kernel and a
  permutation p-value (Gretton et al. 2012);
- `ks_test`: a Kolmogorov–Smirnov test per dimension, Holm-corrected, which also says
  which dimensions moved;
- `moment_shift`: per-dimension shift of the mean and of the standard deviation, in
  reference standard deviations (no test: a size, for dashboards and for people).

numpy only: the serving install stays free of scipy (the tests compare with scipy).
Shapes: n window rows, m reference rows, N = n + m, D latent dimensions, P permutations.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from model.bundle import LatentStatistics

F64 = NDArray[np.float64]

DEFAULT_PERMUTATIONS = 500  # p-values down to 1/501 ≈ 0.002, below the 0.01 the alert rule uses
DEFAULT_LEVEL = 0.05  # family-wise error rate of the per-dimension KS tests


class LatentWindow:
    """The last `capacity` posterior means added, oldest first: a sliding window (ring buffer).

    A sliding window rather than a reservoir over the whole history (Vitter's algorithm R):
    a reservoir's sample is uniform over everything seen since start, so after a day of
    normal traffic an hour of drifted inputs would be a small part of it and drift would
    show ever later. A window of the last N reflects the inputs of now and forgets the rest.

    Safe for one or more writers and readers across threads: a lock guards the copy in and
    the copy out, which take microseconds for a few hundred rows.
    """

    def __init__(self, capacity: int, latent_dim: int) -> None:
        if capacity < 1 or latent_dim < 1:
            raise ValueError(f"capacity and latent_dim must be positive, got {capacity} and {latent_dim}")
        self.capacity = capacity
        self.latent_dim = latent_dim
        self._rows = np.zeros((capacity, latent_dim), np.float64)  # (capacity, D), a ring
        self._next = 0  # where the next row goes
        self._seen = 0  # rows added since start
        self._lock = threading.Lock()

    def add(self, rows: ArrayLike) -> None:
        """Append posterior means (B, D); the oldest rows go once the window is full."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.latent_dim:
            raise ValueError(f"expected rows of shape (B, {self.latent_dim}), got {rows.shape}")
        with self._lock:
            self._seen += len(rows)
            rows = rows[-self.capacity :]
            first = min(len(rows), self.capacity - self._next)
            self._rows[self._next : self._next + first] = rows[:first]
            self._rows[: len(rows) - first] = rows[first:]  # wrap around
            self._next = (self._next + len(rows)) % self.capacity

    def values(self) -> F64:
        """A copy of the window, oldest row first: (n, D) with n = min(seen, capacity)."""
        with self._lock:
            if self._seen < self.capacity:
                return self._rows[: self._seen].copy()
            return np.concatenate([self._rows[self._next :], self._rows[: self._next]])

    @property
    def seen(self) -> int:
        """Rows added since start, including those that have left the window."""
        return self._seen

    def __len__(self) -> int:
        return min(self._seen, self.capacity)


# --- MMD (Gretton et al. 2012) ------------------------------------------------------------


@dataclass(frozen=True)
class MMDResult:
    """Unbiased MMD² between the window and the reference, with its permutation p-value."""

    statistic: float  # MMD²_u, in squared kernel units (the Gaussian kernel is in [0, 1])
    p_value: float  # (1 + #{permuted MMD²_u >= statistic}) / (1 + permutations)
    bandwidth: float  # σ of the Gaussian kernel, in latent units: the median pairwise distance
    permutations: int
    window: int  # n
    reference: int  # m


def squared_distances(z: F64) -> F64:
    """Pairwise squared Euclidean distances of the rows of `z` (N, D) -> (N, N), >= 0."""
    norms = np.einsum("ij,ij->i", z, z)  # (N,)
    sq_dist = np.maximum(norms[:, None] + norms[None, :] - 2.0 * (z @ z.T), 0.0)
    np.fill_diagonal(sq_dist, 0.0)  # exactly, so k(z, z) = 1 as mmd2_unbiased assumes
    return sq_dist


def median_bandwidth(sq_dist: F64) -> float:
    """The median heuristic: σ = median distance between distinct points (Gretton et al. 2012, §8).

    `sq_dist` (N, N) are squared distances. Computed on the pooled sample, so it does not
    change under the permutations and the permutation test stays exact. Falls back to 1 when
    more than half the pairs coincide.
    """
    upper = sq_dist[np.triu_indices(len(sq_dist), k=1)]
    median = float(np.median(upper)) if upper.size else 0.0
    return math.sqrt(median) if median > 0.0 else 1.0


def mmd2_unbiased(kernel: F64, in_x: F64) -> F64:
    """MMD²_u (Gretton et al. 2012, eq. 3) for each split of a pooled sample into X and Y.

    `kernel` (N, N) is k(z_i, z_j) over the pooled sample, with k(z, z) = 1 (Gaussian);
    `in_x` (N, P) holds 1.0 where row i belongs to X in split p and 0.0 where it belongs to Y,
    with the same n ones in every column. Returns (P,). One matrix product serves all P
    splits: with a = in_x[:, p] and r = kernel @ 1, the sums of the three blocks are
    aᵀKa (X-X), aᵀr - aᵀKa (X-Y) and 1ᵀr - 2aᵀr + aᵀKa (Y-Y); the diagonals are n and m.
    """
    big_n = len(kernel)
    n = round(float(in_x[:, 0].sum()))
    m = big_n - n
    if n < 2 or m < 2:
        raise ValueError(f"MMD²_u needs at least 2 rows on each side, got {n} and {m}")
    row_sums = kernel.sum(axis=1)  # (N,)
    xx = np.einsum("ip,ip->p", in_x, kernel @ in_x)  # (P,) aᵀKa
    xr = row_sums @ in_x  # (P,) aᵀr
    xy = xr - xx
    yy = row_sums.sum() - 2.0 * xr + xx
    return (xx - n) / (n * (n - 1)) + (yy - m) / (m * (m - 1)) - 2.0 * xy / (n * m)


def mmd_test(window: ArrayLike, reference: ArrayLike, *, permutations: int = DEFAULT_PERMUTATIONS,
             seed: int = 0) -> MMDResult:  # fmt: skip
    """Two-sample test of `window` (n, D) against `reference` (m, D) by MMD² (Gretton et al. 2012).

    Gaussian kernel k(a, b) = exp(-|a - b|² / 2σ²) with σ from the median heuristic, the
    unbiased statistic MMD²_u, and a permutation p-value over `permutations` seeded random
    splits of the pooled sample, counting the observed split (Phipson & Smyth 2010) so the
    p-value is never 0. Cost: one (N, N) kernel and one (N, N) @ (N, P) product.
    Raises ValueError for fewer than 2 rows on a side or mismatched D.
    """
    x, y = _two_samples(window, reference)
    n, m = len(x), len(y)
    pooled = np.concatenate([x, y])  # (N, D)
    sq_dist = squared_distances(pooled)
    bandwidth = median_bandwidth(sq_dist)
    kernel = np.exp(sq_dist * (-0.5 / bandwidth**2))  # (N, N)
    rng = np.random.default_rng(seed)
    splits = np.zeros((n + m, permutations + 1))  # column 0: the observed split
    splits[:n, 0] = 1.0
    drawn = rng.permuted(np.tile(np.arange(n + m), (permutations, 1)), axis=1)[:, :n]  # (P, n) rows put in X
    splits[drawn, 1 + np.arange(permutations)[:, None]] = 1.0
    stats = mmd2_unbiased(kernel, splits)  # (P + 1,)
    observed = stats[0]
    p_value = (1.0 + np.count_nonzero(stats[1:] >= observed)) / (1.0 + permutations)
    return MMDResult(float(observed), float(p_value), bandwidth, permutations, n, m)


# --- per-dimension Kolmogorov–Smirnov, Holm-corrected ---------------------------------------


@dataclass(frozen=True)
class KSResult:
    """Two-sample KS per latent dimension, with Holm-adjusted p-values."""

    statistics: tuple[float, ...]  # (D,) sup |F_window - F_reference|
    p_values: tuple[float, ...]  # (D,) asymptotic, uncorrected
    adjusted: tuple[float, ...]  # (D,) Holm (1979): family-wise error rate over the D tests
    p_value: float  # min(adjusted): the global test "no dimension moved"
    flagged: tuple[int, ...]  # dimensions with adjusted p-value <= level, most significant first
    level: float
    window: int
    reference: int


def ks_statistic(x: F64, y: F64) -> float:
    """The two-sample KS statistic sup_t |F_x(t) - F_y(t)| of 1-d samples (Smirnov 1939)."""
    x, y = np.sort(x), np.sort(y)
    points = np.concatenate([x, y])
    cdf_x = np.searchsorted(x, points, side="right") / len(x)
    cdf_y = np.searchsorted(y, points, side="right") / len(y)
    return float(np.max(np.abs(cdf_x - cdf_y)))


def kolmogorov_sf(lam: float) -> float:
    """P(K > λ) for Kolmogorov's limiting distribution K = sup |Brownian bridge|.

    Q(λ) = 2 Σ_{k>=1} (-1)^(k-1) exp(-2 k² λ²) for λ >= 1, and its Jacobi-theta form
    1 - √(2π)/λ Σ_{k>=1} exp(-(2k-1)² π² / (8 λ²)) below, where each converges in a few terms.
    """
    if lam <= 0.0:
        return 1.0
    k = np.arange(1, 21)
    if lam < 1.0:
        cdf = math.sqrt(2.0 * math.pi) / lam * np.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8.0 * lam**2)).sum()
        return float(min(1.0, max(0.0, 1.0 - cdf)))
    return float(min(1.0, max(0.0, 2.0 * np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * k**2 * lam**2)))))


def ks_p_value(statistic: float, n: int, m: int) -> float:
    """Asymptotic two-sided p-value of a two-sample KS statistic, with Stephens' (1970) small-sample
    correction λ = (√e + 0.12 + 0.11/√e) D, e = nm/(n+m) (Press et al., Numerical Recipes, §14.3)."""
    e = math.sqrt(n * m / (n + m))
    return kolmogorov_sf((e + 0.12 + 0.11 / e) * statistic)


def holm(p_values: ArrayLike) -> F64:
    """Holm's (1979) step-down adjusted p-values: family-wise error control under any dependence.

    Sorted ascending, p_(i) becomes max_{j<=i} min(1, (D - j + 1) p_(j)); returned in the input's order.
    Chosen over Benjamini–Hochberg because latent dimensions are correlated and one false
    alarm is what an operator pays for, not a false discovery proportion.
    """
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def ks_test(window: ArrayLike, reference: ArrayLike, *, level: float = DEFAULT_LEVEL) -> KSResult:
    """Per-dimension two-sample KS tests of `window` (n, D) against `reference` (m, D), Holm-corrected.

    Raises ValueError for fewer than 2 rows on a side or mismatched D.
    """
    x, y = _two_samples(window, reference)
    n, m = len(x), len(y)
    stats = [ks_statistic(x[:, d], y[:, d]) for d in range(x.shape[1])]
    raw = np.array([ks_p_value(s, n, m) for s in stats])
    adjusted = holm(raw)
    flagged = [int(d) for d in np.argsort(adjusted, kind="stable") if adjusted[d] <= level]
    return KSResult(tuple(stats), tuple(raw.tolist()), tuple(adjusted.tolist()), float(adjusted.min()),
                    tuple(flagged), level, n, m)  # fmt: skip


# --- moments ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MomentShift:
    """Per-dimension change of the window's moments, in reference standard deviations σ_d."""

    mean: tuple[float, ...]  # (D,) (mean_window - mean_reference) / σ_d
    std: tuple[float, ...]  # (D,) (std_window - σ_d) / σ_d
    window: int

    @property
    def max_abs_mean(self) -> float:
        return max(abs(v) for v in self.mean)

    @property
    def max_abs_std(self) -> float:
        return max(abs(v) for v in self.std)


def moment_shift(stats: LatentStatistics, window: ArrayLike) -> MomentShift:
    """Shift of the mean and standard deviation of `window` (n, D) from the training split's,
    in units of its standard deviation σ_d = √variance_d (all training images, not only the reference)."""
    x = np.asarray(window, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(stats.mean) or len(x) < 2:
        raise ValueError(f"expected a window of shape (n >= 2, {len(stats.mean)}), got {x.shape}")
    sigma = np.sqrt(np.maximum(np.asarray(stats.variance), 1e-12))  # (D,) an inactive unit may be ~0
    mean = (x.mean(axis=0) - np.asarray(stats.mean)) / sigma
    std = (x.std(axis=0) - sigma) / sigma
    return MomentShift(tuple(mean.tolist()), tuple(std.tolist()), len(x))


# --- all of it ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftReport:
    """Every drift view of one window against one bundle's training latents."""

    window: int  # n: latents tested
    reference: int  # m: reference latents
    mmd: MMDResult
    ks: KSResult
    shift: MomentShift


def drift_report(stats: LatentStatistics, window: ArrayLike, *, permutations: int = DEFAULT_PERMUTATIONS,
                 seed: int = 0, level: float = DEFAULT_LEVEL) -> DriftReport:  # fmt: skip
    """MMD, per-dimension KS and moment shifts of `window` (n, D) against the bundle's `stats`.

    `window` needs at least 2 rows; a few hundred give a useful test. For n = m = 500, D = 16
    and 500 permutations it costs about two thirds of encoding the window's 500 images (55 ms
    and more on one core: `python -m bench.drift`).
    """
    reference = np.asarray(stats.reference, dtype=np.float64)
    mmd = mmd_test(window, reference, permutations=permutations, seed=seed)
    ks = ks_test(window, reference, level=level)
    return DriftReport(mmd.window, mmd.reference, mmd, ks, moment_shift(stats, window))


def _two_samples(window: ArrayLike, reference: ArrayLike) -> tuple[F64, F64]:
    x = np.asarray(window, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"window {x.shape} and reference {y.shape} must be (n, D) and (m, D) with the same D")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"a two-sample test needs at least 2 rows on each side, got {len(x)} and {len(y)}")
    return x, y

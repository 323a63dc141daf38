"""The score vocabulary and the scoring maths in numpy: likelihoods, KL, ELBO and IWAE parts,
complexity, SSIM, latent Mahalanobis distance, and combinations of p-values.

`SCORES` is the one table of per-image scores: their names, units, what they measure and
which of them a bundle calibrates (so a request can decide with them). The runtime, the
calibration, the evaluation, the service and its wire schemas all derive from it; adding a
score means a row here and its computation in `model/runtime.py`.

Shared by the trainer (calibration, test metrics) and the service, so the two can never
disagree on a score. Every function is pure: noise comes in as an argument.
Shapes: N images, K importance samples, D latent dimensions, P = C*H*W pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class Score:
    """One per-image score; higher is always more anomalous."""

    name: str
    unit: str
    description: str
    calibrated: bool = False  # the calibration keeps its sorted values: it can decide
    combined: bool = False  # pools other scores' p-values (Calibration.combination); rank-based


SCORES: tuple[Score, ...] = (
    Score("neg_elbo", "nats", "negative ELBO = reconstruction + kl", calibrated=True),
    Score("reconstruction", "nats", "-E_q[log p(x|z)] over the importance samples"),
    Score("kl", "nats", "KL(q(z|x) || p(z)), closed form"),
    Score("iwae_nll", "nats", "-log p(x), importance-weighted with K samples (Burda et al. 2016)", calibrated=True),
    Score("bits_per_dim", "bits/dim", "iwae_nll in bits per pixel"),
    Score("mse", "pixel^2", "mean squared pixel error of the reconstruction from the posterior mean", calibrated=True),
    Score("png_bits", "bits", "L(x): the 8-bit image's length as a PNG (zlib level 9), headers included"),
    Score("complexity", "bits", "iwae_nll / ln 2 - png_bits: Serrà et al. (2020)'s complexity-corrected NLL",
          calibrated=True),
    Score("posterior_mean_nll", "nats", "-log p(x | z = posterior mean): the heatmap pixel_nll summed over pixels",
          calibrated=True),
    Score("discretised_nll", "nats", "-log P(x in 8 bits | z = posterior mean): the decoder's density (continuous "
          "Bernoulli, or Gaussian) integrated over each pixel's 8-bit bin", calibrated=True),
    Score("dssim", "1", "(1 - SSIM(x, reconstruction)) / 2, SSIM over 7x7 windows (Wang et al. 2004; Bergmann et "
          "al. 2019)", calibrated=True),
    Score("mahalanobis", "1", "squared Mahalanobis distance of the posterior mean from the training split's "
          "posterior means (manifest latents); NaN without them", calibrated=True),
    Score("latent_nll", "nats", "-log density of the posterior mean under the Gaussian mixture fitted to the "
          "training split's posterior means (manifest latents.mixture); NaN without one", calibrated=True),
    Score("fisher", "1", "Fisher's -2 sum log p over the combined scores' p-values against the reference split; "
          "NaN without a combination", calibrated=True, combined=True),
    Score("tippett", "1", "-log(1 - (1 - min p)^m): Tippett's minimum p-value, Sidak-corrected, over the "
          "combined scores; NaN without a combination", calibrated=True, combined=True),
)  # fmt: skip
SCORE_NAMES: tuple[str, ...] = tuple(s.name for s in SCORES)
CALIBRATED_SCORES: tuple[str, ...] = tuple(s.name for s in SCORES if s.calibrated)
COMBINED_SCORES: tuple[str, ...] = tuple(s.name for s in SCORES if s.combined)

# Chosen on the selection half of the OOD family only (bench/results/anomaly-selection.md,
# docs/anomaly.md): the default score, what the combined scores pool, the latent mixture's size.
DEFAULT_SCORE = "fisher"
DEFAULT_COMBINATION = ("mse", "complexity", "posterior_mean_nll", "latent_nll")
DEFAULT_MIXTURE_COMPONENTS = 20
DEFAULT_FALSE_POSITIVE_RATE = 0.01
DEFAULT_IMPORTANCE_SAMPLES = 64  # K when neither the request nor the calibration says

FloatArray = NDArray[np.float32] | NDArray[np.float64]

_LOG_2PI = math.log(2.0 * math.pi)


def bernoulli_pixel_log_prob(x: FloatArray, logits: FloatArray) -> NDArray[np.float64]:
    """log p(x_i|z) per pixel, for x in [0, 1] and logits of the same shape (..., C, H, W).

    Stable form of x*log(sigmoid(l)) + (1-x)*log(1-sigmoid(l)) = x*l - softplus(l),
    the negative of binary cross-entropy with logits.
    """
    logits = logits.astype(np.float64)
    return np.asarray(x * logits - np.logaddexp(0.0, logits), dtype=np.float64)


def gaussian_pixel_log_prob(x: FloatArray, mean: FloatArray, log_scale: FloatArray) -> NDArray[np.float64]:
    """log N(x_i; mean_i, exp(log_scale)^2) per pixel; log_scale broadcasts per channel."""
    log_scale = np.asarray(log_scale, dtype=np.float64).reshape(-1, 1, 1)  # (C, 1, 1)
    diff = (x - mean.astype(np.float64)) * np.exp(-log_scale)
    return np.asarray(-0.5 * diff**2 - log_scale - 0.5 * _LOG_2PI, dtype=np.float64)


def sum_pixels(per_pixel: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per-pixel values (..., C, H, W) summed per image -> (...)."""
    return per_pixel.reshape(*per_pixel.shape[:-3], -1).sum(axis=-1)


def standard_normal_log_prob(z: FloatArray) -> NDArray[np.float64]:
    """log N(z; 0, I) summed over the last axis."""
    z = z.astype(np.float64)
    return (-0.5 * z**2 - 0.5 * _LOG_2PI).sum(axis=-1)


def diag_normal_log_prob(eps: FloatArray, log_var: FloatArray) -> NDArray[np.float64]:
    """log q(z|x) for z = mean + exp(log_var/2) * eps, summed over the last axis.

    Written in terms of eps, (z - mean) / std, which avoids the cancellation of
    recomputing it from z.
    """
    eps, log_var = eps.astype(np.float64), log_var.astype(np.float64)
    return (-0.5 * eps**2 - 0.5 * log_var - 0.5 * _LOG_2PI).sum(axis=-1)


def kl_to_standard_normal(mean: FloatArray, log_var: FloatArray) -> NDArray[np.float64]:
    """KL(N(mean, exp(log_var)) || N(0, I)) per row (Kingma & Welling 2014, Appendix B)."""
    mean, log_var = mean.astype(np.float64), log_var.astype(np.float64)
    return -0.5 * (1.0 + log_var - mean**2 - np.exp(log_var)).sum(axis=-1)


def iwae_log_likelihood(log_weights: FloatArray) -> NDArray[np.float64]:
    """log p(x) ~ logsumexp_k log w_k - log K, for log_weights (N, K) -> (N,) (Burda et al. 2016)."""
    return log_sum_exp(log_weights) - math.log(log_weights.shape[-1])


def log_sum_exp(values: FloatArray) -> NDArray[np.float64]:
    """log sum_k exp(values_k) over the last axis, stably: (..., K) -> (...).

    Also combines the sums of parts: log_sum_exp of the parts' log_sum_exp is the whole's,
    and for a single part it is that part's value exactly.
    """
    values = values.astype(np.float64)
    top = values.max(axis=-1, keepdims=True)
    return np.log(np.exp(values - top).sum(axis=-1)) + top[..., 0]


def bits_per_dim(nll_nats: FloatArray | float, dims: int) -> NDArray[np.float64]:
    """Convert a negative log-likelihood in nats per image to bits per dimension."""
    return np.asarray(nll_nats, dtype=np.float64) / (dims * math.log(2.0))


def complexity_corrected(nll_nats: FloatArray, png_bits: FloatArray) -> NDArray[np.float64]:
    """Serrà et al. (2020)'s S(x) = -log2 p(x) - L(x): the NLL in bits minus the image's
    compressed length L(x) in bits. A likelihood score alone ranks simple images (flat,
    blurry) as most normal (Nalisnick et al. 2019); subtracting L(x) removes the part of
    the NLL that any generic compressor would pay too."""
    return np.asarray(nll_nats, dtype=np.float64) / math.log(2.0) - np.asarray(png_bits, dtype=np.float64)


# -- likelihoods of the 8-bit image -------------------------------------------------------

_BINS = 255  # 8-bit images: value k/255 stands for the bin [(k - 1/2)/255, (k + 1/2)/255] within [0, 1]


def _bins(x: FloatArray) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The 8-bit bin [low, high] of each value, the outer bins open to 0 and 1."""
    k = np.round(np.clip(np.asarray(x, np.float64), 0.0, 1.0) * _BINS)
    return np.maximum((k - 0.5) / _BINS, 0.0), np.minimum((k + 0.5) / _BINS, 1.0)


def continuous_bernoulli_bin_log_prob(x: FloatArray, logits: FloatArray) -> NDArray[np.float64]:
    """log P(x's 8-bit bin) per pixel under the continuous Bernoulli CB(sigmoid(logits))
    (Loaiza-Ganem & Cunningham 2019), a proper density on [0, 1] with the Bernoulli's form.

    Its CDF is F(x) = (lam^x (1-lam)^(1-x) + lam - 1) / (2 lam - 1), so with l = logit(lam),
    a bin [a, a + w] holds (1 - lam) e^(a l) expm1(w l) / tanh(l / 2), in logs:
    -softplus(l) + a l + log(expm1(w l) / tanh(l / 2)); the ratio tends to 2w as l -> 0.
    """
    low, high = _bins(x)
    logits = np.asarray(logits, np.float64)
    width = high - low
    small = np.abs(logits) < 1e-6
    safe = np.where(small, 1.0, logits)
    ratio = np.where(small, 2.0 * width * (1.0 + 0.5 * width * logits), np.expm1(width * safe) / np.tanh(0.5 * safe))
    return np.asarray(-np.logaddexp(0.0, logits) + low * logits + np.log(ratio), dtype=np.float64)


_ERFC = np.frompyfunc(math.erfc, 1, 1)  # numpy has no erfc; the base install has no scipy


def _log_upper_tail(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """log(1 - Phi(z)) for z in [-inf, inf]: from erfc, or where that underflows (z > 37),
    from the asymptotic series phi(z)/z (1 - 1/z^2 + 3/z^4 - 15/z^6), whose error there is below 1e-10."""
    q = 0.5 * np.asarray(_ERFC(z / math.sqrt(2.0)), dtype=np.float64)
    far = q < 1e-290
    zf = np.where(far, z, 40.0)
    with np.errstate(divide="ignore"):
        series = -0.5 * zf**2 - np.log(zf) - 0.5 * _LOG_2PI + np.log1p(-(zf**-2) + 3 * zf**-4 - 15 * zf**-6)
        return np.where(far, series, np.log(q))


def gaussian_bin_log_prob(x: FloatArray, mean: FloatArray, log_scale: FloatArray) -> NDArray[np.float64]:
    """log P(x's 8-bit bin) per pixel under N(mean, exp(log_scale)^2) (..., C, H, W), the
    outer bins open to -inf and +inf (as Salimans et al. 2017 do for the discretised logistic)."""
    low, high = _bins(x)
    mean = np.asarray(mean, np.float64)
    scale = np.exp(np.asarray(log_scale, np.float64).reshape(-1, 1, 1))  # (C, 1, 1)
    z_low = np.where(low <= 0.0, -np.inf, (low - mean) / scale)
    z_high = np.where(high >= 1.0, np.inf, (high - mean) / scale)
    # The mass as a difference of two tails on the far side of the mean, Q(a) - Q(b) with a < b
    # and Q = 1 - Phi, in logs: log Q(a) + log1p(-Q(b) / Q(a)). No cancellation, no underflow.
    right = z_low > 0
    near, far = _log_upper_tail(np.where(right, z_low, -z_high)), _log_upper_tail(np.where(right, z_high, -z_low))
    return np.asarray(near + np.log1p(-np.exp(far - near)), dtype=np.float64)


# -- structural similarity -----------------------------------------------------------------

SSIM_WINDOW = 7  # scikit-image's default; Wang et al. (2004) use 11, too wide for 28x28 inputs
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _window_means(a: NDArray[np.float64], w: int) -> NDArray[np.float64]:
    """Means over every w x w window that lies inside (..., H, W) -> (..., H-w+1, W-w+1), by an integral image."""
    c = np.cumsum(np.cumsum(a, axis=-1), axis=-2)
    c = np.pad(c, [(0, 0)] * (a.ndim - 2) + [(1, 0), (1, 0)])
    return (c[..., w:, w:] - c[..., :-w, w:] - c[..., w:, :-w] + c[..., :-w, :-w]) / (w * w)


def ssim(x: FloatArray, y: FloatArray, data_range: float = 1.0, window: int = SSIM_WINDOW) -> NDArray[np.float64]:
    """Mean structural similarity of image pairs (..., C, H, W) -> (...) (Wang et al. 2004).

    Uniform `window` x `window` windows, the sample covariance, K1 = 0.01 and K2 = 0.03,
    averaged over the windows that fit inside the image and over channels: exactly what
    scikit-image's `structural_similarity(x, y, data_range=..., channel_axis=0)` computes.
    A side shorter than `window` shrinks the window to the largest odd size that fits.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    w = min(window, x.shape[-1], x.shape[-2])
    w -= 1 - w % 2  # odd
    cov_norm = w * w / (w * w - 1.0)
    ux, uy = _window_means(x, w), _window_means(y, w)
    vx = cov_norm * (_window_means(x * x, w) - ux * ux)
    vy = cov_norm * (_window_means(y * y, w) - uy * uy)
    vxy = cov_norm * (_window_means(x * y, w) - ux * uy)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.reshape(*s.shape[:-3], -1).mean(axis=-1)


def dssim(x: FloatArray, y: FloatArray) -> NDArray[np.float64]:
    """Structural dissimilarity (1 - SSIM) / 2 of image pairs (..., C, H, W) in [0, 1] -> (...)."""
    return (1.0 - ssim(x, y)) / 2.0


# -- latent density -------------------------------------------------------------------------


def mahalanobis_squared(z: FloatArray, mean: ArrayLike, precision: ArrayLike) -> NDArray[np.float64]:
    """(z - mean)^T precision (z - mean) per row of z (N, D), for the inverse covariance (D, D)."""
    d = np.asarray(z, np.float64) - np.asarray(mean, np.float64)
    return np.einsum("nd,de,ne->n", d, np.asarray(precision, np.float64), d)


def mixture_nll(z: FloatArray, weights: ArrayLike, means: ArrayLike, precisions_cholesky: ArrayLike
                ) -> NDArray[np.float64]:  # fmt: skip
    """-log sum_m w_m N(z; mu_m, Sigma_m) per row of z (N, D), for a Gaussian mixture given by its
    weights (M,), means (M, D) and the Cholesky factors L_m of its precisions (M, D, D),
    Sigma_m^-1 = L_m L_m^T (scikit-learn's parameterisation)."""
    z = np.asarray(z, np.float64)
    chol = np.asarray(precisions_cholesky, np.float64)
    y = np.einsum("nd,mde->nme", z, chol) - np.einsum("md,mde->me", np.asarray(means, np.float64), chol)[None]
    log_det = np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)  # (M,): log |L_m| = 1/2 log |Sigma_m^-1|
    log_joint = np.log(np.asarray(weights, np.float64)) + log_det - 0.5 * z.shape[1] * _LOG_2PI - 0.5 * (y**2).sum(-1)
    top = log_joint.max(axis=1, keepdims=True)  # (N, M) -> logsumexp over m
    return -(np.log(np.exp(log_joint - top).sum(axis=1)) + top[:, 0])


# -- combining p-values -----------------------------------------------------------------------


def fisher_statistic(p_values: FloatArray) -> NDArray[np.float64]:
    """Fisher's -2 sum_j log p_j over the last axis (N, m) -> (N,). Under independence it is
    chi^2 with 2m degrees of freedom; our scores are dependent, so it is calibrated
    conformally instead, like any score."""
    return -2.0 * np.log(np.asarray(p_values, np.float64)).sum(axis=-1)


def tippett_statistic(p_values: FloatArray) -> NDArray[np.float64]:
    """-log of Tippett's combined p-value 1 - (1 - min_j p_j)^m (the Sidak correction of the
    minimum), over the last axis (N, m) -> (N,); higher is more anomalous."""
    p = np.asarray(p_values, np.float64)
    with np.errstate(divide="ignore"):  # min p = 1: log1p(-1) = -inf, and the statistic is 0
        return -np.log(-np.expm1(p.shape[-1] * np.log1p(-p.min(axis=-1))))

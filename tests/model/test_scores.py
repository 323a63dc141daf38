"""The numpy scoring maths against torch and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from model import scores as S

rng = np.random.default_rng(0)


def test_bernoulli_log_prob_is_minus_bce_with_logits() -> None:
    x = rng.random((3, 5, 1, 4, 4))  # grey values, not just 0/1
    logits = rng.normal(scale=30.0, size=x.shape).astype(np.float32)  # large: tests stability
    expected = (
        -F.binary_cross_entropy_with_logits(torch.from_numpy(logits).double(), torch.from_numpy(x), reduction="none")
        .flatten(2)
        .sum(-1)
    )
    np.testing.assert_allclose(S.sum_pixels(S.bernoulli_pixel_log_prob(x, logits)), expected.numpy(), rtol=1e-10)


def test_gaussian_log_prob_matches_torch_normal_per_channel() -> None:
    x, mean = rng.random((4, 3, 5, 5)), rng.random((4, 3, 5, 5))
    log_scale = np.array([-2.0, -1.0, 0.5])
    std = torch.from_numpy(np.exp(log_scale)).view(1, 3, 1, 1)
    expected = Normal(torch.from_numpy(mean), std).log_prob(torch.from_numpy(x)).flatten(1).sum(-1)
    np.testing.assert_allclose(
        S.sum_pixels(S.gaussian_pixel_log_prob(x, mean, log_scale)), expected.numpy(), rtol=1e-10
    )


def test_kl_matches_torch_kl_divergence() -> None:
    mean, log_var = rng.normal(size=(6, 8)), rng.normal(size=(6, 8))
    q = Normal(torch.from_numpy(mean), torch.from_numpy(np.exp(0.5 * log_var)))
    expected = kl_divergence(q, Normal(0.0, 1.0)).sum(-1)
    np.testing.assert_allclose(S.kl_to_standard_normal(mean, log_var), expected.numpy(), rtol=1e-10)


def test_log_q_in_terms_of_eps_matches_torch_normal() -> None:
    mean, log_var, eps = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    std = np.exp(0.5 * log_var)
    z = mean + std * eps
    expected = Normal(torch.from_numpy(mean), torch.from_numpy(std)).log_prob(torch.from_numpy(z)).sum(-1)
    np.testing.assert_allclose(S.diag_normal_log_prob(eps, log_var), expected.numpy(), rtol=1e-9)
    np.testing.assert_allclose(
        S.standard_normal_log_prob(z), Normal(0.0, 1.0).log_prob(torch.from_numpy(z)).sum(-1).numpy(), rtol=1e-10
    )


def test_iwae_is_exact_when_q_is_the_true_posterior() -> None:
    """z ~ N(0, 1), x|z ~ N(z, 1): p(x) = N(0, 2) and p(z|x) = N(x/2, 1/2); with q = p(z|x)
    every importance weight equals p(x), so the estimate is exact for any K."""
    x = 1.3
    post_mean, post_log_var = np.array([[x / 2]]), np.array([[math.log(0.5)]])
    eps = rng.normal(size=(1, 7, 1))  # (N, K, D)
    z = post_mean[:, None] + np.exp(0.5 * post_log_var[:, None]) * eps
    log_px_z = -0.5 * (x - z[..., 0]) ** 2 - 0.5 * math.log(2 * math.pi)
    log_w = log_px_z + S.standard_normal_log_prob(z) - S.diag_normal_log_prob(eps, post_log_var[:, None])
    exact = -0.25 * x**2 - 0.5 * math.log(2 * math.pi * 2)
    np.testing.assert_allclose(S.iwae_log_likelihood(log_w), [exact], rtol=1e-12)


def test_iwae_matches_torch_logsumexp_and_is_stable() -> None:
    log_w = rng.normal(size=(4, 100)) * 10 - 5000.0  # exp() of these underflows
    expected = torch.logsumexp(torch.from_numpy(log_w), dim=1) - math.log(100)
    np.testing.assert_allclose(S.iwae_log_likelihood(log_w), expected.numpy(), rtol=1e-12)


def test_bits_per_dim() -> None:
    assert S.bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)


def test_complexity_is_the_nll_in_bits_minus_the_compressed_length() -> None:
    nll_nats = np.array([math.log(2.0) * 100.0, 0.0])
    np.testing.assert_allclose(S.complexity_corrected(nll_nats, np.array([30.0, 8.0])), [70.0, -8.0])


def _bin_edges(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An independent statement of the 8-bit bins: value k/255 covers [(k - 1/2)/255, (k + 1/2)/255]."""
    k = np.round(x * 255)
    return (k - 0.5) / 255, (k + 0.5) / 255


def test_continuous_bernoulli_bins_match_torch_cdf() -> None:
    x = np.round(rng.random((2, 1, 6, 6)) * 255) / 255
    x[0, 0, 0], x[0, 0, 1] = 0.0, 1.0  # the outer bins, open to 0 and 1
    logits = rng.normal(scale=6.0, size=x.shape)
    logits[1, 0, 0, :3] = [0.0, 1e-8, -3e-7]  # lambda = 1/2 and next to it, where the CDF's formula is 0/0
    low, high = _bin_edges(x)
    cb = torch.distributions.ContinuousBernoulli(logits=torch.from_numpy(logits))
    expected = torch.log(cb.cdf(torch.from_numpy(np.clip(high, 0, 1))) - cb.cdf(torch.from_numpy(np.clip(low, 0, 1))))
    np.testing.assert_allclose(S.continuous_bernoulli_bin_log_prob(x, logits), expected.numpy(), rtol=1e-6, atol=1e-9)


def test_gaussian_bins_match_scipy_normal_and_keep_their_tails() -> None:
    from scipy.stats import norm

    x = np.round(rng.random((2, 3, 5, 5)) * 255) / 255
    x[0, :, 0] = 0.0
    x[0, :, 1] = 1.0
    mean, log_scale = rng.random(x.shape), np.array([-2.5, -1.0, -4.0])
    scale = np.exp(log_scale).reshape(3, 1, 1)
    low, high = _bin_edges(x)
    low, high = np.where(x == 0, -np.inf, low), np.where(x == 1, np.inf, high)
    # log(F(b) - F(a)) = log F(b) + log1p(-F(a) / F(b)), from the tail on the far side of the mean
    with np.errstate(divide="ignore", invalid="ignore"):  # np.where computes the side it then drops
        upper = norm.logsf(low, mean, scale) + np.log1p(
            -np.exp(norm.logsf(high, mean, scale) - norm.logsf(low, mean, scale))
        )
        lower = norm.logcdf(high, mean, scale) + np.log1p(
            -np.exp(norm.logcdf(low, mean, scale) - norm.logcdf(high, mean, scale))
        )
    expected = np.where(low > mean, upper, lower)
    np.testing.assert_allclose(S.gaussian_bin_log_prob(x, mean, log_scale), expected, rtol=1e-9)
    far = S.gaussian_bin_log_prob(np.full((1, 1, 1, 1), 0.5), np.zeros((1, 1, 1, 1)), np.array([-5.0]))
    assert np.isfinite(far).all() and far[0, 0, 0, 0] < -2700  # 74 standard deviations away: no -inf


@pytest.mark.parametrize("shape", [(4, 1, 28, 28), (2, 3, 20, 17), (1, 1, 5, 9)])
def test_ssim_is_scikit_image_structural_similarity(shape: tuple[int, ...]) -> None:
    from skimage.metrics import structural_similarity

    x = rng.random(shape)
    y = np.clip(x + rng.normal(scale=0.2, size=shape), 0, 1)
    window = min(7, shape[-1], shape[-2]) // 2 * 2 + 1 if min(shape[-2:]) < 7 else 7
    expected = [
        structural_similarity(a, b, data_range=1.0, channel_axis=0, win_size=window) for a, b in zip(x, y, strict=True)
    ]
    np.testing.assert_allclose(S.ssim(x, y), expected, rtol=1e-9)
    np.testing.assert_allclose(S.dssim(x, y), (1 - np.asarray(expected)) / 2, rtol=1e-9)
    np.testing.assert_allclose(S.ssim(x, x), 1.0)


def test_mahalanobis_matches_scipy() -> None:
    from scipy.spatial.distance import mahalanobis

    data = rng.normal(size=(200, 4)) @ rng.normal(size=(4, 4))
    mean, precision = data.mean(0), np.linalg.inv(np.cov(data.T))
    z = rng.normal(size=(5, 4))
    expected = [mahalanobis(row, mean, precision) ** 2 for row in z]
    np.testing.assert_allclose(S.mahalanobis_squared(z, mean, precision), expected, rtol=1e-10)


def test_mixture_nll_matches_scikit_learn() -> None:
    from sklearn.mixture import GaussianMixture

    data = np.concatenate([rng.normal(size=(150, 3)), rng.normal(loc=4.0, scale=0.5, size=(100, 3))])
    gmm = GaussianMixture(3, covariance_type="full", random_state=0).fit(data)
    z = rng.normal(scale=3.0, size=(20, 3))
    got = S.mixture_nll(z, gmm.weights_, gmm.means_, gmm.precisions_cholesky_)
    np.testing.assert_allclose(got, -gmm.score_samples(z), rtol=1e-10)


def test_p_value_combinations_match_scipy_combine_pvalues() -> None:
    from scipy.stats import combine_pvalues

    p = rng.random((6, 3))
    p[0] = [1.0, 1.0, 1.0]
    p[1] = [1e-9, 0.5, 0.9]
    fisher = [combine_pvalues(row, method="fisher").statistic for row in p]
    tippett = [-np.log(combine_pvalues(row, method="tippett").pvalue) for row in p]
    np.testing.assert_allclose(S.fisher_statistic(p), fisher, rtol=1e-12)
    np.testing.assert_allclose(S.tippett_statistic(p), tippett, rtol=1e-9, atol=1e-15)

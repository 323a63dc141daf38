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

"""Latent statistics of the training data, against a direct computation on the same encoder."""

from __future__ import annotations

import numpy as np
import pytest

from model.bundle import Bundle
from model.latents import active_dimensions, latent_statistics
from model.runtime import RuntimeOptions, VAERuntime


@pytest.fixture(scope="module")
def runtime(bundle: Bundle) -> VAERuntime:
    return VAERuntime(bundle, RuntimeOptions(intra_op_threads=1))


def test_statistics_are_those_of_the_posterior_means(runtime: VAERuntime, digit_images: np.ndarray) -> None:
    stats = latent_statistics(runtime, digit_images, reference_size=10, seed=3, batch=7)
    mean, log_var = (a.astype(np.float64) for a in runtime.encode(digit_images))
    assert (stats.images, stats.split, stats.seed) == (64, "train", 3)
    np.testing.assert_allclose(stats.mean, mean.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats.variance, mean.var(0), rtol=1e-6)
    np.testing.assert_allclose(stats.covariance, np.cov(mean.T), rtol=1e-6, atol=1e-12)
    kl = 0.5 * (mean**2 + np.exp(log_var) - 1.0 - log_var)  # per dimension
    np.testing.assert_allclose(stats.kl, kl.mean(0), rtol=1e-6)
    reference = np.asarray(stats.reference)
    assert reference.shape == (10, runtime.latent_dim)
    assert all(any(np.allclose(row, m) for m in mean) for row in reference)  # rows of the data, not new points
    again = latent_statistics(runtime, digit_images, reference_size=10, seed=3)
    assert again.reference == stats.reference  # the same seed draws the same rows


def test_active_dimensions_are_ordered_by_variance(runtime: VAERuntime, digit_images: np.ndarray) -> None:
    stats = latent_statistics(runtime, digit_images)
    variance = np.asarray(stats.variance)
    active = active_dimensions(stats)
    assert active == sorted((d for d in range(len(variance)) if variance[d] > 0.01), key=lambda d: -variance[d])
    assert active_dimensions(stats, threshold=np.inf) == []


def test_the_trained_bundle_keeps_its_training_latents(bundle: Bundle) -> None:
    stats = bundle.manifest.latents
    assert stats is not None and stats.split == "train"
    assert stats.images == bundle.manifest.dataset.split.counts["train"]
    assert len(stats.mean) == len(stats.covariance) == bundle.manifest.latent_dim
    assert len(stats.reference) == min(500, stats.images)

"""The shipped default model: intact, as good as its card says, and sensible on real digits."""

from __future__ import annotations

import numpy as np
import pytest

from app.settings import SHIPPED_REPOSITORY
from model.bundle import list_repository, load_bundle
from model.runtime import RuntimeOptions, VAERuntime, batched_scores
from model.scores import p_values
from training.config import DataConfig
from training.formats import open_source


@pytest.fixture(scope="module")
def shipped() -> VAERuntime:
    bundles = list_repository(SHIPPED_REPOSITORY)
    assert list(bundles) == [("mnist-vae", "1")]
    return VAERuntime(load_bundle(bundles[("mnist-vae", "1")]), RuntimeOptions(intra_op_threads=1))


def test_quality_bar(shipped: VAERuntime) -> None:
    test = next(m for m in shipped.manifest.metrics if m.split == "test")
    assert (test.images, test.importance_samples) == (500, 1000)
    assert test.neg_elbo <= 100.0 and test.iwae_nll <= 95.0  # the bar; the MLP baseline is ~111 / ~104
    assert shipped.bundle.path.joinpath("MODEL_CARD.md").read_text().count(f"{test.iwae_nll:.2f}") == 1


def test_calibrated_on_real_digits_and_flags_noise(shipped: VAERuntime) -> None:
    manifest = shipped.manifest
    dataset = open_source(DataConfig())
    assert dataset.fingerprint() == manifest.dataset.sha256  # the same data the manifest names
    counts = manifest.dataset.split.counts
    perm = np.random.default_rng(manifest.dataset.split.seed).permutation(manifest.dataset.rows)
    test_rows = perm[: counts["test"]][:200]
    cal = manifest.calibration
    scores = batched_scores(shipped, dataset.read(test_rows), cal.importance_samples, cal.seed)
    flagged = np.mean(scores.by_name(cal.score) > cal.threshold)
    assert flagged <= 0.05  # calibrated at 1 %; 200 held-out digits leave room for chance
    assert np.median(scores.mse) < 0.02  # reconstructions are close
    noise = np.random.default_rng(0).random((20, 1, 28, 28)).astype(np.float32)
    assert (shipped.score(noise, cal.importance_samples, 0).by_name(cal.score) > cal.threshold).all()


def test_default_score_and_simple_inputs(shipped: VAERuntime) -> None:
    """mse decides (docs/anomaly.md); a blank image fools the likelihood, not mse or complexity."""
    cal = shipped.manifest.calibration
    assert cal.score == "mse" and set(cal.scores) == {"neg_elbo", "iwae_nll", "mse", "complexity"}
    blank = shipped.score(np.zeros((1, 1, 28, 28), np.float32), cal.importance_samples, cal.seed)
    p = {name: p_values(cal.scores[name], blank.by_name(name))[0] for name in cal.scores}
    assert p["iwae_nll"] == 1.0  # more likely than every calibration digit (Nalisnick et al. 2019)
    assert p["complexity"] < 0.01 and p["mse"] < 0.01 and blank.mse[0] > cal.threshold

"""The shipped models: the default digits model intact, as good as its card says, and sensible on
real digits; the colour fundus model small, calibrated on held-out patches, proving its scores."""

from __future__ import annotations

import numpy as np
import pytest

from app.settings import SHIPPED_REPOSITORY
from model.bundle import list_repository, load_bundle
from model.decision import decide, p_values, threshold_at_fpr
from model.golden import verify_golden
from model.runtime import RuntimeOptions, VAERuntime, batched_scores
from model.scores import CALIBRATED_SCORES, DEFAULT_COMBINATION, DEFAULT_MIXTURE_COMPONENTS, DEFAULT_SCORE
from training.config import DataConfig
from training.formats import open_source


@pytest.fixture(scope="module")
def shipped() -> VAERuntime:
    bundles = list_repository(SHIPPED_REPOSITORY)
    assert sorted(bundles) == [("fundus-vae", "1"), ("mnist-vae", "1")]
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
    flagged = np.mean(scores[cal.score] > cal.threshold)
    assert flagged <= 0.05  # calibrated at 1 %; 200 held-out digits leave room for chance
    assert np.median(scores["mse"]) < 0.02  # reconstructions are close
    noise = np.random.default_rng(0).random((20, 1, 28, 28)).astype(np.float32)
    assert (shipped.score(noise, cal.importance_samples, 0)[cal.score] > cal.threshold).all()


def test_default_score_and_simple_inputs(shipped: VAERuntime) -> None:
    """fisher decides (docs/anomaly.md); a blank image fools the likelihood, not mse, complexity or fisher."""
    cal = shipped.manifest.calibration
    assert cal.score == DEFAULT_SCORE == "fisher" and tuple(cal.scores) == CALIBRATED_SCORES
    assert tuple(cal.combination.scores) == DEFAULT_COMBINATION and cal.combination.split == "validation"
    assert len(shipped.manifest.latents.mixture.weights) == DEFAULT_MIXTURE_COMPONENTS
    blank = shipped.score(np.zeros((1, 1, 28, 28), np.float32), cal.importance_samples, cal.seed)
    p = {name: p_values(cal.scores[name], blank[name])[0] for name in cal.scores}
    assert p["iwae_nll"] == 1.0  # more likely than every calibration digit (Nalisnick et al. 2019)
    assert p["complexity"] < 0.01 and p["mse"] < 0.01 and p["fisher"] < 0.01 and blank["fisher"][0] > cal.threshold


def test_recalibrated_without_retraining_and_proves_its_scores(shipped: VAERuntime) -> None:
    """The shipped graphs are the ones trained in 2026-11, with training.export.strip_metadata
    applied afterwards (it drops the exporter's stack traces, which held this machine's paths,
    and leaves every node and weight as it was: the golden set still verifies); the golden set
    comes from them alone, since the checkpoint does not ship, and verifies at load."""
    files = shipped.manifest.files
    assert files["encoder.onnx"].sha256 == "b2ca7e6dbd867efc6edc8044e2d39b004c19a8b6da254ddb28d458b534f253c5"
    assert files["decoder.onnx"].sha256 == "9fb040bcdff2205d1fedaa63f5610f588c3979887ad53820215ac33c832ef8ae"
    golden = shipped.manifest.golden
    assert golden is not None and golden.computed_by == "onnx" and golden.images == 7
    checked = verify_golden(shipped)
    assert [g.decision.is_anomaly for g in checked.images] == [False] * 3 + [True] * 4
    assert shipped.manifest.calibration.pixel_threshold > 0


def test_every_calibrated_score_decides_exactly_when_its_p_value_is_within_the_rate(shipped: VAERuntime) -> None:
    """For every calibrated score of the shipped bundle, at its own rate and at others: every
    calibration score, and the points between and beyond them, is flagged exactly when its
    conformal p-value is at most the rate (model/decision.py); the stored threshold is the
    conformal order statistic k = ceil(0.99 (n + 1)) = 249 of 250, the 2nd largest."""
    cal = shipped.manifest.calibration
    assert cal is not None and cal.split_size == 250 and cal.false_positive_rate == 0.01
    assert cal.threshold == threshold_at_fpr(cal.scores[cal.score], 0.01) == cal.scores[cal.score][248]
    for name, values in cal.scores.items():
        ordered = np.asarray(values)
        probes = np.concatenate([ordered, (ordered[1:] + ordered[:-1]) / 2, ordered[[0, -1]] + [-1.0, 1.0]])
        for rate in (cal.false_positive_rate, 0.004, 0.02, 0.05, 0.1, 0.25, 0.5):
            decision = decide(cal, {name: probes}, name, rate)
            assert decision.p_values is not None and decision.is_anomaly is not None
            np.testing.assert_array_equal(decision.is_anomaly, decision.p_values <= rate, err_msg=f"{name} at {rate}")


@pytest.fixture(scope="module")
def fundus() -> VAERuntime:
    path = list_repository(SHIPPED_REPOSITORY)[("fundus-vae", "1")]
    return VAERuntime(load_bundle(path), RuntimeOptions(intra_op_threads=1))


def test_the_fundus_model_is_small_calibrated_and_proves_its_scores(fundus: VAERuntime) -> None:
    m = fundus.manifest
    assert (m.input.channels, m.input.height, m.input.width, m.likelihood.kind) == (3, 64, 64, "gaussian")
    assert sum(p.stat().st_size for p in fundus.bundle.path.iterdir()) < 8_000_000  # bytes, no more than the digits'
    golden = m.golden  # re-calibrated after training (docs/anomaly.md), so from the ONNX graphs alone
    assert golden is not None and golden.computed_by == "onnx"
    checked = verify_golden(fundus)
    assert [g.decision.is_anomaly for g in checked.images] == [False] * 3 + [True] * 4
    assert m.calibration is not None and m.calibration.pixel_threshold is not None
    assert m.calibration.pixel_threshold > 0  # the heatmap's scale runs from 0 to twice it
    assert m.dataset is not None and m.dataset.split.counts["calibration"] >= 100  # enough for a 1 % threshold

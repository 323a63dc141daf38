"""`python -m training.calibrate`: re-calibrating a real bundle without retraining."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import combine_pvalues

from model.bundle import Bundle, load_bundle
from model.decision import p_values, threshold_at_fpr
from model.golden import verify_golden
from model.runtime import VAERuntime, batched_scores
from model.scores import CALIBRATED_SCORES, DEFAULT_COMBINATION, DEFAULT_MIXTURE_COMPONENTS
from training.calibrate import main
from training.data import bundle_arrays


def test_training_calibrates_every_decision_score(bundle: Bundle) -> None:
    cal = bundle.manifest.calibration
    assert tuple(cal.scores) == CALIBRATED_SCORES == (
        "neg_elbo", "iwae_nll", "mse", "complexity", "posterior_mean_nll", "discretised_nll", "dssim", "mahalanobis",
        "latent_nll", "fisher", "tippett")  # fmt: skip
    assert all(len(v) == cal.split_size and v == sorted(v) for v in cal.scores.values())
    assert all(np.isfinite(v).all() for v in cal.scores.values())


def test_the_combination_pools_p_values_against_the_validation_split(bundle: Bundle) -> None:
    cal = bundle.manifest.calibration
    combination = cal.combination
    assert combination.scores == list(DEFAULT_COMBINATION) and combination.split == "validation"
    splits = bundle_arrays(bundle.manifest)
    runtime = VAERuntime(bundle)
    reference = batched_scores(runtime, splits["validation"], cal.importance_samples, cal.seed)
    assert combination.split_size == len(splits["validation"])
    for name in combination.scores:
        np.testing.assert_allclose(combination.reference[name], np.sort(reference[name]), rtol=1e-9)
    # The combined scores of the calibration split are Fisher's and Tippett's statistics of the
    # components' conformal p-values against that reference (scipy's combine_pvalues).
    calibration = batched_scores(runtime, splits["calibration"], cal.importance_samples, cal.seed)
    p = np.stack([p_values(combination.reference[n], calibration[n]) for n in combination.scores], axis=-1)
    fisher = [combine_pvalues(row, method="fisher").statistic for row in p]
    tippett = [-np.log(combine_pvalues(row, method="tippett").pvalue) for row in p]
    np.testing.assert_allclose(cal.scores["fisher"], np.sort(fisher), rtol=1e-9)
    np.testing.assert_allclose(cal.scores["tippett"], np.sort(tippett), rtol=1e-9)
    np.testing.assert_allclose(calibration["fisher"], fisher, rtol=1e-9)  # the runtime computes the same


def test_the_latent_mixture_is_scikit_learns_on_the_training_split(bundle: Bundle) -> None:
    from sklearn.mixture import GaussianMixture

    mixture = bundle.manifest.latents.mixture
    splits = bundle_arrays(bundle.manifest)
    runtime = VAERuntime(bundle)
    means, _ = runtime.encode(splits["train"])
    components = min(DEFAULT_MIXTURE_COMPONENTS, len(means) // 10)
    assert len(mixture.weights) == components and mixture.seed == 0
    gmm = GaussianMixture(components, covariance_type="full", reg_covar=mixture.reg_covar, max_iter=500,
                          random_state=0).fit(means.astype(np.float64))  # fmt: skip
    np.testing.assert_allclose(mixture.weights, gmm.weights_, rtol=1e-6, atol=1e-9)
    test = splits["test"][:10]
    scores = runtime.score(test, 2, 0)
    np.testing.assert_allclose(scores["latent_nll"], -gmm.score_samples(runtime.encode(test)[0].astype(np.float64)),
                               rtol=1e-6)  # fmt: skip


def test_recalibrate_changes_only_the_manifest_and_card(bundle: Bundle, tmp_path: Path, capsys) -> None:
    path = tmp_path / "digits" / "1"
    shutil.copytree(bundle.path, path)
    assert main([str(path), "--score", "complexity", "--fpr", "0.1", "-q"]) == 0
    assert "complexity threshold" in capsys.readouterr().out
    again = load_bundle(path)  # checksums verified
    cal, old = again.manifest.calibration, bundle.manifest.calibration
    assert (cal.score, cal.false_positive_rate) == ("complexity", 0.1)
    assert cal.threshold == threshold_at_fpr(cal.scores["complexity"], 0.1)
    # The same split, K and seed as at training time: the very same calibration scores.
    assert cal.scores == old.scores and (cal.importance_samples, cal.seed) == (old.importance_samples, old.seed)
    assert cal.combination == old.combination and again.manifest.latents == bundle.manifest.latents
    assert cal.pixel_threshold != old.pixel_threshold  # fitted at the new rate
    for name in ("encoder.onnx", "decoder.onnx", "samples.png"):
        assert (path / name).read_bytes() == (bundle.path / name).read_bytes()
    card = (path / "MODEL_CARD.md").read_text()
    assert card.count("## Anomaly calibration") == 1 and "Score `complexity`" in card and "Re-calibrated" in card
    assert "\n\n## Limits" in card and "Golden set: 7 images in `golden.json`, from the ONNX graphs" in card
    # Without the torch model, the golden set is the ONNX graphs' alone, and the manifest says so.
    assert again.manifest.golden.computed_by == "onnx" and again.manifest.golden.torch_onnx_max_abs_diff is None
    assert verify_golden(VAERuntime(again)) is not None
    unchanged = {"calibration": old, "golden": bundle.manifest.golden, "files": {}}
    assert again.manifest.model_copy(update=unchanged) == bundle.manifest.model_copy(update={"files": {}})


def test_recalibrate_with_another_combination_and_mixture(bundle: Bundle, tmp_path: Path) -> None:
    path = tmp_path / "digits" / "1"
    shutil.copytree(bundle.path, path)
    assert main([str(path), "--combine", "mse", "mahalanobis", "--mixture-components", "3", "-q"]) == 0
    manifest = load_bundle(path).manifest
    assert manifest.calibration.combination.scores == ["mse", "mahalanobis"]
    assert len(manifest.latents.mixture.weights) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fpr", "1.5"], "error: --fpr must be in (0, 1), got 1.5"),
        (["--importance-samples", "0"], "error: --importance-samples must be >= 1, got 0"),
        (
            ["--mixture-components", "0"],
            "error: calibration.mixture_components: Input should be greater than or equal to 1, got 0",
        ),
        (
            ["--combine", "mse", "mse"],
            "error: calibration.combine must name distinct scores of ['neg_elbo', 'iwae_nll', "
            "'mse', 'complexity', 'posterior_mean_nll', 'discretised_nll', 'dssim', 'mahalanobis', 'latent_nll'], "
            "got ['mse', 'mse']",
        ),
    ],
)
def test_bad_arguments_change_nothing(bundle: Bundle, tmp_path: Path, capsys, args: list[str], message: str) -> None:
    path = tmp_path / "b"
    shutil.copytree(bundle.path, path)
    before = (path / "manifest.json").read_bytes()
    assert main([str(path), *args]) == 2
    assert capsys.readouterr().err.strip() == message
    assert (path / "manifest.json").read_bytes() == before


def test_missing_bundle_is_exit_2(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "nothing")]) == 2
    assert "missing manifest" in capsys.readouterr().err

"""`python -m training.quantize`: int8 graphs behind a quality gate, as a new bundle version."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from model.bundle import Bundle, load_bundle
from model.runtime import VAERuntime
from training.anomaly_sets import OOD_SETS
from training.calibrate import CALIBRATED_SCORES, calibrate
from training.config import CalibrationConfig
from training.data import bundle_splits
from training.quantize import main, parse_args


def ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(path).graph.node}


def test_writes_the_next_version_with_int8_graphs(bundle: Bundle, quantized: Bundle) -> None:
    m, parent = quantized.manifest, bundle.manifest
    assert quantized.path.name == "2" and (m.name, m.version) == ("digits", "2")
    for graph in ("encoder.onnx", "decoder.onnx"):
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops(quantized.path / graph)
        assert "QuantizeLinear" not in ops(bundle.path / graph)
        assert m.files[graph].sha256 != parent.files[graph].sha256
    q = m.quantization
    assert q is not None and parent.quantization is None
    assert (q.parent.name, q.parent.version) == ("digits", "1")
    assert q.parent.sha256 == {g: parent.files[g].sha256 for g in ("encoder.onnx", "decoder.onnx")}
    assert (q.graphs, q.per_channel, q.activation_type, q.weight_type) == (
        ["encoder", "decoder"],
        True,
        "uint8",
        "int8",
    )
    assert q.calibration_images == parent.calibration.split_size


def test_manifest_records_the_quality_it_kept(bundle: Bundle, quantized: Bundle) -> None:
    q = quantized.manifest.quantization
    checks = {c.metric: c for c in q.quality}
    expected = {"test neg_elbo", "test iwae_nll"} | {
        f"AUROC {s} {score}" for s in OOD_SETS for score in CALIBRATED_SCORES
    }
    assert set(checks) == expected
    assert all(
        c.passed and c.tolerance == (0.1 if c.metric.startswith("AUROC") else 5.0) for c in q.quality
    )  # as given
    parent_test = next(s for s in bundle.manifest.metrics if s.split == "test")
    new_test = next(s for s in quantized.manifest.metrics if s.split == "test")
    # The gate measured the parent as its own training did, and the manifest's metrics are the int8 graphs'.
    assert checks["test neg_elbo"].parent == pytest.approx(parent_test.neg_elbo, abs=1e-6)
    assert checks["test iwae_nll"].quantized == new_test.iwae_nll != parent_test.iwae_nll
    assert new_test.importance_samples == parent_test.importance_samples
    card = (quantized.path / "MODEL_CARD.md").read_text()
    assert card.startswith("# digits v2\n") and "## Quantisation" in card and "| test iwae_nll |" in card


def test_thresholds_come_from_the_int8_graphs(bundle: Bundle, quantized: Bundle) -> None:
    cal, old = quantized.manifest.calibration, bundle.manifest.calibration
    splits = bundle_splits(quantized.manifest)
    config = CalibrationConfig(score=cal.score, false_positive_rate=cal.false_positive_rate,
                               importance_samples=cal.importance_samples, seed=cal.seed,
                               combine=list(cal.combination.scores))  # fmt: skip
    again = calibrate(VAERuntime(quantized), splits["calibration"], splits["validation"], config)
    assert again == cal
    assert cal.scores != old.scores and (cal.score, cal.importance_samples) == (old.score, old.importance_samples)


def test_the_int8_bundle_loads_and_scores_close_to_its_parent(bundle: Bundle, quantized: Bundle, digit_images) -> None:
    int8, parent = VAERuntime(load_bundle(quantized.path)), VAERuntime(bundle)
    scores, reference = int8.score(digit_images, 8, seed=0), parent.score(digit_images, 8, seed=0)
    assert np.isfinite(scores["neg_elbo"]).all() and not np.array_equal(scores["neg_elbo"], reference["neg_elbo"])
    assert np.abs(scores["neg_elbo"] - reference["neg_elbo"]).mean() < 0.05 * reference["neg_elbo"].mean()


def test_the_defaults_quantise_the_encoder_per_channel_within_half_a_nat_and_0_005_auroc() -> None:
    args = parse_args(["b"])
    assert (args.graphs, args.per_tensor, args.max_nll_change, args.max_auroc_change) == ("encoder", False, 0.5, 0.005)


def test_the_gate_refuses_impossible_tolerances_and_writes_nothing(bundle: Bundle, tmp_path: Path, capsys) -> None:
    shutil.copytree(bundle.path, tmp_path / "digits" / "1")
    code = main([str(tmp_path / "digits" / "1"), "--graphs", "encoder", "--max-nll-change", "0",
                 "--max-auroc-change", "0", "-q"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: quality gate refused the int8 bundle: test neg_elbo changed by ")
    assert "test iwae_nll changed by " in err and "tolerance 0)" in err and err.rstrip().endswith("nothing was written")
    assert not (tmp_path / "digits" / "2").exists()
    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == ["1"]  # no temporary left behind either


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-nll-change", "-1"], "error: tolerances must be >= 0"),
        (["--out", "{quantized}"], "already holds a bundle; pass --force to replace it"),
    ],
)
def test_bad_input_is_exit_2(bundle: Bundle, quantized: Bundle, capsys, args: list[str], message: str) -> None:
    args = [a.format(quantized=quantized.path) for a in args]
    assert main([str(bundle.path), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_quantised_bundle_is_not_quantised_again(quantized: Bundle, tmp_path: Path, capsys) -> None:
    assert main([str(quantized.path), "--out", str(tmp_path / "x" / "3")]) == 2
    assert "is already a quantised bundle; quantise its float parent instead" in capsys.readouterr().err

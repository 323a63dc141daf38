"""`python -m training.calibrate`: re-calibrating a real bundle without retraining."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model.bundle import Bundle, load_bundle
from model.decision import threshold_at_fpr
from model.scores import CALIBRATED_SCORES
from training.calibrate import main


def test_training_calibrates_every_decision_score(bundle: Bundle) -> None:
    cal = bundle.manifest.calibration
    assert tuple(cal.scores) == CALIBRATED_SCORES == ("neg_elbo", "iwae_nll", "mse", "complexity")
    assert all(len(v) == cal.split_size and v == sorted(v) for v in cal.scores.values())


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
    for name in ("encoder.onnx", "decoder.onnx", "samples.png"):
        assert (path / name).read_bytes() == (bundle.path / name).read_bytes()
    card = (path / "MODEL_CARD.md").read_text()
    assert card.count("## Anomaly calibration") == 1 and "Score `complexity`" in card and "Re-calibrated" in card
    assert "\n\n## Limits" in card
    assert again.manifest.model_copy(update={"calibration": old, "files": {}}) == bundle.manifest.model_copy(
        update={"files": {}}
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fpr", "1.5"], "error: --fpr must be in (0, 1), got 1.5"),
        (["--importance-samples", "0"], "error: --importance-samples must be >= 1, got 0"),
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

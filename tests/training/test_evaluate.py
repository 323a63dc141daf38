"""`python -m training.evaluate` and its built-in anomaly sets, on the session's real bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.bundle import Bundle
from training.anomaly_sets import load_set
from training.data import bundle_splits
from training.evaluate import EVALUATED_SCORES, main, score_metrics
from training.sources import DataError


def test_score_metrics_on_known_values() -> None:
    normal, anomalous = np.array([1.0, 2.0, 3.0, 4.0]), np.array([3.5, 5.0, 6.0, 7.0])
    m = score_metrics("set", "s", normal, anomalous, threshold=3.0)
    assert m.auroc == pytest.approx(15 / 16)  # 15 of the 16 (normal, anomaly) pairs are ordered
    assert m.fpr_at_95_tpr == 0.25  # all 4 anomalies are above 3.5, where 1 of 4 normals is too
    assert m.f1_at_threshold == pytest.approx(2 * 4 / (2 * 4 + 1 + 0))  # TP 4, FP 1 (4.0), FN 0
    assert score_metrics("set", "s", normal, anomalous + 10, None).auroc == 1.0


def test_builtin_sets_are_deterministic_images(bundle: Bundle) -> None:
    normal = bundle_splits(bundle.manifest)["test"].array()
    for kind in ("noise", "inverted", "rotated", "letters", "digits8x8"):
        images = load_set(f"builtin:{kind}", bundle.manifest, normal, 12, seed=3)
        assert images.shape == (12, 1, 28, 28) and images.dtype == np.float32, kind
        assert images.min() >= 0.0 and images.max() <= 1.0 and images.max() > 0.5, kind
        np.testing.assert_array_equal(images, load_set(f"builtin:{kind}", bundle.manifest, normal, 12, seed=3))
    np.testing.assert_allclose(load_set("builtin:inverted", bundle.manifest, normal, 5, 0), 1.0 - normal[:5])
    rotated = load_set("builtin:rotated", bundle.manifest, normal, 12, 0)
    for image, original in zip(rotated, normal, strict=False):  # a quarter turn either way, never a half turn
        assert any(np.array_equal(image, np.rot90(original, k, axes=(1, 2))) for k in (1, 3))


def test_unknown_or_impossible_sets(bundle: Bundle) -> None:
    with pytest.raises(DataError, match="unknown built-in set 'builtin:cats'"):
        load_set("builtin:cats", bundle.manifest, None, 5, 0)
    with pytest.raises(DataError, match="transforms the normal set's images"):
        load_set("builtin:inverted", bundle.manifest, None, 5, 0)
    with pytest.raises(DataError, match="needs a bundle trained on some classes"):
        load_set("builtin:other-digits", bundle.manifest, None, 5, 0)


def test_evaluate_end_to_end(bundle: Bundle, tmp_path: Path, digits_npz: Path) -> None:
    out = tmp_path / "eval"
    code = main([str(bundle.path), "--anomaly", "builtin:noise", "family:letters-serif", str(digits_npz),
                 "--out", str(out), "--limit", "40", "--importance-samples", "4", "-q"])  # fmt: skip
    assert code == 0
    results = json.loads((out / "evaluation.json").read_text())["results"]
    assert len(results) == 3 * len(EVALUATED_SCORES)
    for r in results:
        assert 0.0 <= r["auroc"] <= 1.0 and 0.0 <= r["auprc"] <= 1.0 and 0.0 <= r["fpr_at_95_tpr"] <= 1.0
        assert (r["f1_at_threshold"] is None) == (r["score"] not in bundle.manifest.calibration.scores)
    by = {(r["anomaly_set"], r["score"]): r for r in results}
    assert by["builtin:noise", "mse"]["auroc"] > 0.99 and by["builtin:noise", "neg_elbo"]["auroc"] > 0.99
    assert 0.2 < by[str(digits_npz), "neg_elbo"]["auroc"] < 0.8  # the training digits themselves: no separation
    table = (out / "evaluation.md").read_text()
    assert "| anomaly set | score | AUROC | AUPRC | FPR at 95% TPR | F1 at calibrated threshold |" in table
    assert f"| builtin:noise | mse | {by['builtin:noise', 'mse']['auroc']:.3f} |" in table
    with Image.open(out / "roc.png") as roc:
        assert roc.format == "PNG" and roc.size[0] > 600


def test_evaluate_bad_input_is_exit_2(bundle: Bundle, tmp_path: Path, capsys) -> None:
    assert main([str(bundle.path), "--anomaly", "builtin:cats", "--out", str(tmp_path)]) == 2
    assert "unknown built-in set 'builtin:cats'" in capsys.readouterr().err

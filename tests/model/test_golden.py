"""The golden set: written at training from torch and ONNX, checked at every load; a bundle
whose graphs, golden values or calibration no longer agree is refused, naming the difference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from model.bundle import Bundle, load_bundle, write_bundle
from model.decision import threshold_at_fpr
from model.errors import BundleError
from model.golden import GOLDEN, check_calibration, compute_golden, golden_inputs, read_golden, verify_golden
from model.runtime import RuntimeOptions, VAERuntime
from model.scores import COMBINED_SCORES, SCORE_NAMES


def _rewrite(bundle: Bundle, out: Path, **changed: bytes) -> Path:
    """A copy of the bundle with some files replaced and every checksum re-hashed, so only the
    golden set can tell."""
    files = {name: (bundle.path / name).read_bytes() for name in bundle.manifest.files}
    write_bundle(out, bundle.manifest, files | changed)
    return out


def test_training_writes_a_golden_set_that_torch_and_onnx_agree_on(bundle: Bundle) -> None:
    info = bundle.manifest.golden
    assert info is not None and info.file == GOLDEN and info.file in bundle.manifest.files
    assert info.computed_by == "torch+onnx" and info.images == 7
    assert info.torch_onnx_max_abs_diff is not None and set(info.torch_onnx_max_abs_diff) >= {"mean", "mse"}
    diffs = info.torch_onnx_max_abs_diff  # every score is within the golden tolerance, or training fails
    assert diffs["mean"] < 1e-4 and diffs["log_var"] < 1e-4 and diffs["mse"] < 1e-6
    golden = read_golden(bundle)
    assert golden is not None and [g.label.split(":")[0] for g in golden.images] == ["normal"] * 3 + ["anomalous"] * 4
    for g in golden.images:
        assert set(g.scores) == set(SCORE_NAMES) and all(g.scores[name] is not None for name in SCORE_NAMES)
    assert all(g.decision.is_anomaly is not None and 0 < g.decision.p_value <= 1 for g in golden.images)
    assert golden.images[5].scores["mse"] > max(g.scores["mse"] for g in golden.images[:3])  # noise


def test_a_bundle_verifies_its_golden_set_under_other_settings(bundle: Bundle) -> None:
    for options in (RuntimeOptions(intra_op_threads=1, graph_optimization="disable"), RuntimeOptions(decode_chunk=3)):
        assert verify_golden(VAERuntime(bundle, options)) == read_golden(bundle)


def test_an_edited_golden_value_is_refused(bundle: Bundle, tmp_path: Path) -> None:
    raw = json.loads((bundle.path / GOLDEN).read_text())
    raw["images"][4]["scores"]["dssim"] *= 1.01
    path = _rewrite(bundle, tmp_path / "b", **{GOLDEN: json.dumps(raw).encode()})
    with pytest.raises(BundleError, match=rf"{path / GOLDEN}: image 4 \(anomalous: image 1 with a bright square in a corner\): "
                       r"score dssim is [0-9.e-]+ here but [0-9.e-]+ in the golden set \(\|difference\| [0-9.e-]+ > tolerance"):  # fmt: skip
        verify_golden(VAERuntime(load_bundle(path)))


def test_a_changed_weight_is_refused(bundle: Bundle, tmp_path: Path) -> None:
    graph = onnx.load_from_string((bundle.path / "encoder.onnx").read_bytes())
    bias = next(t for t in graph.graph.initializer if numpy_helper.to_array(t).ndim == 1)
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(0.01), bias.name))
    path = _rewrite(bundle, tmp_path / "b", **{"encoder.onnx": graph.SerializeToString()})
    with pytest.raises(
        BundleError, match=rf"{path / GOLDEN}: image 0 \(normal: held-out image 0\): latent mean\[0\] is "
    ):
        verify_golden(VAERuntime(load_bundle(path)))


def test_a_calibration_that_no_longer_gives_the_recorded_decision_is_refused(bundle: Bundle, tmp_path: Path) -> None:
    cal = bundle.manifest.calibration
    # a calibration consistent in itself (the threshold is its scores' at its rate) but not the golden set's
    moved = cal.model_copy(
        update={"false_positive_rate": 0.5, "threshold": threshold_at_fpr(cal.scores[cal.score], 0.5)}
    )
    files = {name: (bundle.path / name).read_bytes() for name in bundle.manifest.files}
    write_bundle(tmp_path / "b", bundle.manifest.model_copy(update={"calibration": moved}), files)
    with pytest.raises(BundleError, match=rf"{tmp_path / 'b' / GOLDEN}: image 0 \(normal: held-out image 0\): decision "
                       rf"threshold is {moved.threshold} from the golden scores and this calibration, but {cal.threshold} in the golden set"):  # fmt: skip
        verify_golden(VAERuntime(load_bundle(tmp_path / "b")))


def _with_calibration(bundle: Bundle, out: Path, **changed: object) -> Bundle:
    cal = bundle.manifest.calibration
    assert cal is not None
    files = {name: (bundle.path / name).read_bytes() for name in bundle.manifest.files}
    write_bundle(out, bundle.manifest.model_copy(update={"calibration": cal.model_copy(update=changed)}), files)
    return load_bundle(out)


def test_an_inconsistent_calibration_is_refused_naming_the_manifest_and_the_field(
    bundle: Bundle, tmp_path: Path
) -> None:
    cal = bundle.manifest.calibration
    assert cal is not None
    check_calibration(bundle)  # the trained bundle's is consistent
    other = next(name for name in cal.scores if name != cal.score)
    cases = [
        ({"threshold": cal.threshold * 1.01}, rf"calibration.threshold {cal.threshold * 1.01!r} is not the threshold "
         rf"of calibration.scores.{cal.score} at calibration.false_positive_rate {cal.false_positive_rate:g}, "
         rf"{cal.threshold!r}: one of them was changed"),
        ({"false_positive_rate": 0.05}, rf"calibration.threshold {cal.threshold!r} is not the threshold of "
         rf"calibration.scores.{cal.score} at calibration.false_positive_rate 0.05, "),
        ({"score": other}, rf"calibration.threshold {cal.threshold!r} is not the threshold of calibration.scores.{other} at "),
        ({"score": "kl"}, r"calibration.score 'kl' has no calibration scores \(calibration.scores holds neg_elbo, "),
        ({"false_positive_rate": 1.0}, r"calibration.false_positive_rate 1.0 is not in \(0, 1\)"),
        ({"scores": cal.scores | {other: cal.scores[other][::-1]}},
         rf"calibration.scores.{other} is not {cal.split_size} \(calibration.split_size\) finite values in ascending"),
        ({"split_size": cal.split_size + 1}, r"calibration.scores.\w+ is not \d+ \(calibration.split_size\)"),
    ]  # fmt: skip
    for i, (changed, message) in enumerate(cases):
        edited = _with_calibration(bundle, tmp_path / str(i), **changed)
        with pytest.raises(BundleError, match=rf"^{edited.path / 'manifest.json'}: {message}"):
            check_calibration(edited)
        with pytest.raises(BundleError, match=r"manifest\.json: calibration"):  # before any golden value
            verify_golden(VAERuntime(edited))


def test_combined_scores_are_checked_against_the_calibration(bundle: Bundle, tmp_path: Path) -> None:
    raw = json.loads((bundle.path / GOLDEN).read_text())
    name = COMBINED_SCORES[0]
    raw["images"][1]["scores"][name] += 0.5
    path = _rewrite(bundle, tmp_path / "b", **{GOLDEN: json.dumps(raw).encode()})
    with pytest.raises(
        BundleError, match=rf"image 1 \(normal: held-out image 1\): score {name} is [0-9.]+ from the golden"
    ):
        verify_golden(VAERuntime(load_bundle(path)))


def test_golden_files_that_cannot_be_read_are_refused(bundle: Bundle, tmp_path: Path) -> None:
    path = _rewrite(bundle, tmp_path / "b", **{GOLDEN: b"{}"})
    with pytest.raises(BundleError, match=rf"{path / GOLDEN}: not a valid golden set"):
        verify_golden(VAERuntime(load_bundle(path)))
    files = {n: (bundle.path / n).read_bytes() for n in bundle.manifest.files if n != GOLDEN}
    write_bundle(tmp_path / "c", bundle.manifest, files)
    with pytest.raises(BundleError, match="the golden set is not among the manifest's checksummed files"):
        verify_golden(VAERuntime(load_bundle(tmp_path / "c")))


def test_a_bundle_without_a_golden_set_loads(bundle: Bundle, tmp_path: Path) -> None:
    files = {n: (bundle.path / n).read_bytes() for n in bundle.manifest.files if n != GOLDEN}
    write_bundle(tmp_path / "b", bundle.manifest.model_copy(update={"golden": None}), files)
    assert verify_golden(VAERuntime(load_bundle(tmp_path / "b"))) is None


def test_golden_inputs_are_normal_and_anomalous_8_bit_images(digit_images: np.ndarray) -> None:
    labels, pixels = golden_inputs(digit_images)
    assert pixels.shape == (7, 1, 28, 28) and pixels.dtype == np.uint8 and len(labels) == 7
    np.testing.assert_array_equal(pixels[3], 255 - pixels[0])
    assert (pixels[6] == 0).all() and (pixels[4][:, :7, :7] == 255).all()
    with pytest.raises(ValueError, match="at least 3 normal images"):
        golden_inputs(digit_images[:2])


def test_compute_golden_is_what_the_runtime_gives(bundle: Bundle, digit_images: np.ndarray) -> None:
    runtime = VAERuntime(bundle)
    labels, pixels = golden_inputs(digit_images)
    golden = compute_golden(runtime, (labels, pixels), importance_samples=4, seed=2)
    images = pixels.astype(np.float32) / 255
    scores = runtime.score(images, 4, 2)
    mean, _ = runtime.encode(images)
    np.testing.assert_allclose([g.mean for g in golden.images], mean, rtol=1e-6)
    np.testing.assert_allclose([g.scores["mse"] for g in golden.images], scores["mse"], rtol=1e-12)

"""The bundle format: manifest round trip, checksums, atomic writes, repositories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model import bundle as B
from model.bundle import Bundle, Manifest, list_repository, load_bundle, write_bundle
from model.errors import BundleError


def _files(bundle: Bundle) -> dict[str, bytes]:
    return {name: (bundle.path / name).read_bytes() for name in bundle.manifest.files}


def _copy(bundle: Bundle, dest: Path) -> Path:
    shutil.copytree(bundle.path, dest)
    return dest


def test_manifest_round_trip(bundle: Bundle, tmp_path: Path) -> None:
    written = write_bundle(tmp_path / "m" / "2", bundle.manifest, _files(bundle))
    loaded = load_bundle(written.path)
    assert loaded.manifest == bundle.manifest
    assert Manifest.model_validate_json((tmp_path / "m" / "2" / "manifest.json").read_text()) == bundle.manifest
    assert set(loaded.manifest.files) >= {"encoder.onnx", "decoder.onnx", "MODEL_CARD.md", "samples.png"}


def test_tampered_file_is_refused_by_name(bundle: Bundle, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path / "b")
    with (copy / "decoder.onnx").open("r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(BundleError) as info:
        load_bundle(copy)
    assert str(info.value) == f"{copy / 'decoder.onnx'}: sha256 does not match the manifest"


def test_missing_file_is_refused_by_name(bundle: Bundle, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path / "b")
    (copy / "encoder.onnx").unlink()
    with pytest.raises(BundleError, match=r"encoder\.onnx: missing file listed in the manifest"):
        load_bundle(copy)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text[:-20], "manifest.json: not valid JSON"),
        (lambda text: text.replace('"latent_dim": 4', '"latent_dim": -4'), "invalid manifest at latent_dim"),
        (lambda text: text.replace('"format_version": 1', '"format_version": 9'), "invalid manifest at format_version"),
        (lambda text: text.replace('"encoder.onnx"', '"other.onnx"'), "manifest lists no encoder.onnx"),
    ],
)
def test_bad_manifest_is_refused(bundle: Bundle, tmp_path: Path, edit, message: str) -> None:
    copy = _copy(bundle, tmp_path / "b")
    manifest = copy / "manifest.json"
    manifest.write_text(edit(manifest.read_text()))
    with pytest.raises(BundleError, match=message):
        load_bundle(copy)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"manifest\.json: missing manifest"):
        load_bundle(tmp_path)


def test_existing_bundle_is_kept_without_force(bundle: Bundle, tmp_path: Path) -> None:
    target = _copy(bundle, tmp_path / "b")
    before = (target / "manifest.json").read_bytes()
    with pytest.raises(BundleError, match="already holds a bundle; pass --force to replace it"):
        write_bundle(target, bundle.manifest, _files(bundle))
    assert (target / "manifest.json").read_bytes() == before
    changed = bundle.manifest.model_copy(update={"description": "replaced"})
    write_bundle(target, changed, _files(bundle), force=True)
    assert load_bundle(target).manifest.description == "replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no leftovers


def test_a_crash_while_writing_leaves_nothing_behind(bundle: Bundle, tmp_path: Path, monkeypatch) -> None:
    written = []

    def failing_write(path: Path, data: bytes) -> None:
        if len(written) == 3:
            raise OSError("disk full")
        written.append(path)
        path.write_bytes(data)

    monkeypatch.setattr(B, "_write_synced", failing_write)
    with pytest.raises(OSError, match="disk full"):
        write_bundle(tmp_path / "m" / "1", bundle.manifest, _files(bundle))
    assert list((tmp_path / "m").iterdir()) == []  # neither the bundle nor its temp dir


def test_a_crash_while_replacing_keeps_the_old_bundle(bundle: Bundle, tmp_path: Path, monkeypatch) -> None:
    target = _copy(bundle, tmp_path / "b")
    monkeypatch.setattr(B, "_write_synced", lambda path, data: (_ for _ in ()).throw(OSError("crash")))
    with pytest.raises(OSError):
        write_bundle(target, bundle.manifest, _files(bundle), force=True)
    assert load_bundle(target).manifest == bundle.manifest


def test_unwritable_output_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BundleError, match="cannot write there"):
        B.check_output_dir(blocker / "m" / "1", force=False)
    with pytest.raises(BundleError, match="exists and is not a directory"):
        B.check_output_dir(blocker, force=False)


def test_repository_lists_numeric_versions_only(bundle: Bundle, tmp_path: Path) -> None:
    for where in ["a/1", "a/2", "b/7", "a/latest", "a/.1.tmp-x", ".c/1"]:
        _copy(bundle, tmp_path / where)
    assert sorted(list_repository(tmp_path)) == [("a", "1"), ("a", "2"), ("b", "7")]
    assert json.loads((tmp_path / "b/7/manifest.json").read_text())["name"] == "digits"

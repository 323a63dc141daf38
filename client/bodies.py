"""Request bodies from what a caller has: image files, encoded image bytes, numpy arrays, latents.

    paths or bytes (PNG, JPEG, ...)  ->  multipart/form-data, one file part per image
    PIL images                       ->  the same, each saved as a PNG
    one numpy array [N, C, H, W]     ->  application/x-npy (numpy.save bytes: compact, exact)
      or [N, H, W], or one [H, W]
    a list of [C, H, W] arrays       ->  stacked, then application/x-npy

The server converts colour and size to the model's input spec (model/preprocess.py), so
nothing is decoded here; Pillow is imported only to save a PIL image given as one.
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

NPY = "application/x-npy"

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


def image_body(images: Images) -> Body:
    """The body for encode, reconstruct and score: arrays as one .npy batch, anything else one file part each."""
    if isinstance(images, np.ndarray):
        batch = images[None, None] if images.ndim == 2 else images  # one [H, W] image
        return Body(content=npy_bytes(batch), content_type=NPY)
    one = isinstance(images, str | bytes | os.PathLike) or _is_pil(images)
    items: Sequence[ImageLike] = [images] if one else images  # type: ignore[list-item,assignment]
    if not items:
        raise ValueError("no images given")
    arrays = [isinstance(item, np.ndarray) for item in items]
    if all(arrays):
        return Body(content=npy_bytes(np.stack([np.asarray(item) for item in items])), content_type=NPY)
    if any(arrays):
        raise TypeError("give arrays on their own (one .npy batch) or files, bytes and PIL images; not a mix")
    return Body(files=[("file", _file_part(item, i)) for i, item in enumerate(items)])


def _is_pil(item: object) -> bool:
    return type(item).__module__.startswith("PIL.") and hasattr(item, "save")


def _file_part(item: ImageLike, index: int) -> tuple[str, bytes, str]:
    if isinstance(item, bytes):
        return f"image-{index}", item, "application/octet-stream"
    if isinstance(item, str | os.PathLike):
        path = Path(item)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return path.name, path.read_bytes(), kind
    if _is_pil(item):
        buffer = io.BytesIO()
        item.save(buffer, format="PNG")  # type: ignore[union-attr]  # lossless, any mode Pillow can write
        return f"image-{index}.png", buffer.getvalue(), "image/png"
    raise TypeError(f"image {index}: expected a path, bytes, a PIL image or an array, got {type(item).__name__}")


def npy_bytes(array: NDArray[Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def latents_json(latents: ArrayLike, fmt: str | None = None) -> Body:
    """{"latents": [N, D] values} (one [D] latent is one row), with /v1/decode's `format` when given."""
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim == 1:
        z = z[None]
    if z.ndim != 2 or z.size == 0:
        raise ValueError(f"latents must be [N, latent_dim] values, got shape {z.shape}")
    return Body(json={"latents": z.tolist()} | ({"format": fmt} if fmt else {}))


def codes_body(images: Images | None, latents: ArrayLike | None) -> Body:
    """The body of /v1/interpolate and /v1/traverse: images as for encode, or latents as JSON."""
    if images is not None and latents is None:
        return image_body(images)
    if latents is not None and images is None:
        return latents_json(latents)
    raise ValueError("give images or latents, one of the two")

"""Request bodies from what a caller has: image files, encoded image bytes, numpy arrays, latents.

    paths or bytes (PNG, JPEG, ...)  ->  multipart/form-data, one file part per image
    one numpy array [N, C, H, W]     ->  application/x-npy (numpy.save bytes: compact, exact)
    a list of [C, H, W] arrays       ->  stacked, then application/x-npy

The server converts colour and size to the model's input spec (model/preprocess.py), so
nothing is decoded here: the client needs neither Pillow nor the model.
"""

from __future__ import annotations

import io
import mimetypes
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

NPY = "application/x-npy"

ImageLike = str | os.PathLike[str] | bytes | NDArray[Any]
Images = ImageLike | Sequence[ImageLike]


@dataclass(frozen=True)
class Body:
    """One request body, in the form httpx takes it."""

    content: bytes | None = None
    content_type: str | None = None
    files: list[tuple[str, tuple[str, bytes, str]]] = field(default_factory=list)
    json: dict[str, Any] | None = None


def image_body(images: Images) -> Body:
    """The body for encode, reconstruct and score; an array is a batch, anything else one image each."""
    if isinstance(images, np.ndarray):
        return Body(content=npy_bytes(images), content_type=NPY)
    items: Sequence[ImageLike] = [images] if isinstance(images, str | bytes | os.PathLike) else images
    if not items:
        raise ValueError("no images given")
    if all(isinstance(item, np.ndarray) for item in items):
        return Body(content=npy_bytes(np.stack([np.asarray(item) for item in items])), content_type=NPY)
    return Body(files=[("file", _file_part(item, i)) for i, item in enumerate(items)])


def _file_part(item: ImageLike, index: int) -> tuple[str, bytes, str]:
    if isinstance(item, bytes):
        return f"image-{index}", item, "application/octet-stream"
    if isinstance(item, str | os.PathLike):
        path = Path(item)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return path.name, path.read_bytes(), kind
    raise TypeError(f"image {index}: expected a path, bytes or an array, got {type(item).__name__}")


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

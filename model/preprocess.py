"""Image conversion shared by training and serving: bytes or arrays <-> float32 in [0, 1].

Model inputs are float32 (N, C, H, W) in the manifest's value range [0, 1], with the
manifest's colour mode and size. Training loads its image folders through the same
functions the service uses for uploads, so the two cannot drift apart.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from model.bundle import InputSpec
from model.errors import InputError, InputTooLargeError, InvalidImageError

DEFAULT_MAX_PIXELS = 4096 * 4096  # decoded pixels per image; larger is refused unread

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}


def decode_image(
    data: bytes, spec: InputSpec, *, index: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> NDArray[np.float32]:
    """Decode PNG/JPEG/... bytes into (C, H, W) float32 in [0, 1] per `spec`.

    The pixel count is checked from the header before any pixel is decoded, so a
    decompression bomb costs nothing. 16-bit images are scaled. Transparency is composited
    on `spec.background` when set, else dropped. Another size is resized (`spec.resize`)
    after stretching or centre-cropping to the model's aspect ratio (`spec.fit`).
    """
    if not data:
        raise InvalidImageError("empty image", index)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we check the size below
            image: Image.Image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InvalidImageError("not a decodable image", index) from None
    except Image.DecompressionBombError as exc:
        raise InputTooLargeError(str(exc), index) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImageError(f"corrupt image data ({exc})", index) from None
    width, height = image.size
    if width * height > max_pixels:
        raise InputTooLargeError(f"{width}x{height} is {width * height} pixels, over the limit of {max_pixels}", index)
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImageError(f"corrupt image data ({exc})", index) from None
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # Pillow's convert("L") clips 16-bit and float images instead of scaling them.
        scale = 65535.0 if image.mode != "F" else 1.0
        grey = np.asarray(image, dtype=np.float32) / scale
        image = Image.fromarray(np.clip(grey * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if spec.background is not None and (image.has_transparency_data or "A" in image.getbands()):
        level = spec.background
        image = Image.alpha_composite(Image.new("RGBA", image.size, (level, level, level, 255)), image.convert("RGBA"))
    image = image.convert(spec.colour_mode)
    if image.size != (spec.width, spec.height):
        if spec.resize == "error":
            raise InputError(f"size {width}x{height} differs from the model's {spec.width}x{spec.height}", index)
        size, resample = (spec.width, spec.height), _RESAMPLE[spec.resize]
        image = ImageOps.fit(image, size, resample) if spec.fit == "center_crop" else image.resize(size, resample)
    pixels = np.asarray(image, dtype=np.float32) / 255.0  # (H, W) or (H, W, C)
    return pixels.reshape(spec.height, spec.width, spec.channels).transpose(2, 0, 1)


def from_array(values: object, spec: InputSpec, *, index: int | None = None) -> NDArray[np.float32]:
    """Check an array of pixel values in [0, 1] and shape it (C, H, W).

    Accepted shapes: (C, H, W), (H, W) for one channel, or flat (C*H*W,).
    """
    try:
        array = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError("array is not a rectangular array of numbers", index) from None
    shape = (spec.channels, spec.height, spec.width)
    if (array.shape == shape[1:] and spec.channels == 1) or array.shape == (math.prod(shape),):
        array = array.reshape(shape)
    if array.shape != shape:
        raise InputError(f"array shape {list(array.shape)} does not match the model's {list(shape)}", index)
    if not np.isfinite(array).all():
        raise InputError("array holds NaN or infinite values", index)
    low, high = spec.value_range
    if array.min() < low or array.max() > high:
        raise InputError(f"array values must lie in [{low}, {high}]", index)
    return array


def from_batch(values: NDArray[np.generic], spec: InputSpec) -> NDArray[np.float32]:
    """Check a whole batch at once: (N, C, H, W), or (N, H, W) for one channel; uint8 is
    scaled from 0..255, floats must lie in [0, 1]. Errors name the first bad image."""
    shape = (spec.channels, spec.height, spec.width)
    if values.ndim == 3 and spec.channels == 1:
        values = values[:, None]
    if values.ndim != 4 or values.shape[1:] != shape:
        raise InputError(
            f"array shape {list(values.shape)} does not match the model's [N, {', '.join(map(str, shape))}]"
        )
    if values.dtype == np.uint8:
        return values.astype(np.float32) / np.float32(255.0)
    if values.dtype.kind != "f":
        raise InputError(f"array dtype {values.dtype} is not uint8 or floating point")
    images = values.astype(np.float32, copy=False)
    bad = ~np.isfinite(images).reshape(len(images), -1).all(axis=1)
    if bad.any():
        raise InputError("array holds NaN or infinite values", int(np.argmax(bad)))
    low, high = spec.value_range
    outside = ((images < low) | (images > high)).reshape(len(images), -1).any(axis=1)
    if outside.any():
        raise InputError(f"array values must lie in [{low}, {high}]", int(np.argmax(outside)))
    return images


def to_uint8(images: NDArray[np.floating]) -> NDArray[np.uint8]:
    """(..., C, H, W) in [0, 1] -> (..., H, W, C) uint8, rounding to nearest."""
    clipped = np.clip(images, 0.0, 1.0) * 255.0 + 0.5
    return np.moveaxis(clipped.astype(np.uint8), -3, -1)


def encode_png(image: NDArray[np.floating], compress_level: int = 6) -> bytes:
    """One (C, H, W) image in [0, 1] -> PNG bytes (greyscale or RGB), zlib level 0..9."""
    pixels = to_uint8(image)  # (H, W, C)
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(
        buffer, format="PNG", compress_level=compress_level
    )
    return buffer.getvalue()


def png_bits(images: NDArray[np.floating]) -> NDArray[np.float64]:
    """The compressed length L(x) in bits of each (N, C, H, W) image, for the complexity score.

    Exactly: the image rounded to 8 bits per channel (`to_uint8`), saved by Pillow as a
    greyscale ("L") or RGB PNG with zlib level 9, Pillow's default filter choice and no
    ancillary chunks; L(x) = 8 x the whole file's length, headers included (a constant
    ~456 bits for one size of image, so it shifts every score alike).
    """
    return np.array([8.0 * len(encode_png(image, compress_level=9)) for image in images], dtype=np.float64)


# A perceptually ordered dark-to-bright colour scale (anchors of matplotlib's "inferno"),
# interpolated to 256 entries, so heatmaps need no plotting library in the serving path.
_ANCHORS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64)
_COLORMAP = (
    np.stack(
        [np.interp(np.linspace(0.0, 1.0, 256), np.linspace(0.0, 1.0, len(_ANCHORS)), _ANCHORS[:, c]) for c in range(3)],
        axis=-1,
    )
    .round()
    .astype(np.uint8)
)  # (256, 3)


def heatmap_png(values: NDArray[np.floating], vmax: float | None = None) -> bytes:
    """A (C, H, W) or (H, W) map, e.g. per-pixel NLL -> an RGB PNG, 0 dark, `vmax` bright.

    Channels are averaged. `vmax` defaults to the map's own maximum, so each heatmap uses
    the whole colour scale; pass one value to make several maps comparable.
    """
    grid = np.asarray(values, dtype=np.float64)
    if grid.ndim == 3:
        grid = grid.mean(axis=0)  # (H, W)
    low = min(float(grid.min()), 0.0)  # a Gaussian's per-pixel NLL can be negative
    top = (float(grid.max()) if vmax is None else vmax) - low
    scaled = np.clip((grid - low) / top, 0.0, 1.0) if top > 0 else np.zeros_like(grid)
    rgb = _COLORMAP[np.round(scaled * 255.0).astype(np.intp)]  # (H, W, 3)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def make_grid(images: NDArray[np.floating], columns: int | None = None, padding: int = 2) -> NDArray[np.float32]:
    """Tile (N, C, H, W) images into one (C, H', W') image with `padding` pixels between."""
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.zeros((c, rows * (h + padding) + padding, columns * (w + padding) + padding), np.float32)
    for i, image in enumerate(images):
        top = padding + (i // columns) * (h + padding)
        left = padding + (i % columns) * (w + padding)
        grid[:, top : top + h, left : left + w] = image
    return grid

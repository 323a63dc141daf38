"""Image conversion shared by training and serving: bytes or arrays <-> float32 in [0, 1].

Model inputs are float32 (N, C, H, W) in the manifest's value range [0, 1], with the
manifest's colour mode and size. Training loads its image folders through the same
functions the service uses for uploads, so the two cannot drift apart.
"""

from __future__ import annotations

import io
import itertools
import math
import re
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyspng
from numpy.typing import NDArray
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from model.bundle import InputSpec
from model.errors import InputError, InputTooLargeError, InvalidImageError, UnsupportedImageError

DEFAULT_MAX_PIXELS = 4096 * 4096  # decoded pixels per image; larger is refused unread
# A 16-bit image whose values all lie below 2**12 and that declares no depth is ambiguous:
# 10- and 12-bit sensor data stored in 16 bits looks exactly like that.
_AMBIGUOUS_BELOW = 4096
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR = {0: "L", 2: "RGB"}  # PNG colour types the fast path decodes (8 bits, no alpha) -> mode
# Chunks that may come before a PNG's image data and leave Pillow's picture as it is (it
# applies neither gamma nor colour profiles; sBIT matters past 8 bits only), with their
# lengths. Text chunks are not here: Pillow reads EXIF and XMP orientation from some of them.
_INERT_PNG_CHUNKS = {b"IHDR": (13,), b"gAMA": (4,), b"cHRM": (32,), b"sRGB": (1,), b"pHYs": (9,), b"tIME": (7,),
                     b"sBIT": (1, 3)}  # fmt: skip

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}
_FAST_PNG_PIXELS = 512 * 512  # larger PNGs go to Pillow (and are decoded off the event loop)


# The formats Pillow may open: the common raster formats (training's image folders take the
# same). Every other plugin stays closed: EPS would run Ghostscript on untrusted PostScript,
# and rarely used decoders are where parsing bugs live.
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")  # JPEG opens MPO (phones) too
_FORMAT_NAMES = "PNG, JPEG, GIF, BMP, TIFF, WebP or PPM"


def open_image(data: bytes, *, index: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open an image's header (no pixel is decoded) and check its pixel count against `max_pixels`.

    Only `IMAGE_FORMATS` are opened. Raises InvalidImageError (not decodable),
    UnsupportedImageError (a format Pillow knows that is not allowed, named) or
    InputTooLargeError, so a decompression bomb costs nothing. `image.size` is then the
    declared size; `decode_opened` decodes it.
    """
    if not data:
        raise InvalidImageError("empty image", index)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we check the size below
            image: Image.Image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except UnidentifiedImageError:
        refused = _known_format(data)
        if refused is not None:
            raise UnsupportedImageError(f"{refused} images are not supported; send {_FORMAT_NAMES}", index) from None
        raise InvalidImageError("not a decodable image", index) from None
    except Image.DecompressionBombError as exc:  # past twice Pillow's own limit: say ours, not Pillow's
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{pixels[1]} pixels" if pixels else "over Pillow's decompression-bomb limit"
        raise InputTooLargeError(f"{size}, over the limit of {max_pixels}", index) from None
    except Exception as exc:  # Pillow's format plugins raise many kinds of errors on corrupt headers
        raise InvalidImageError(f"corrupt image data ({exc})", index) from None
    width, height = image.size
    if width * height > max_pixels:
        raise InputTooLargeError(f"{width}x{height} is {width * height} pixels, over the limit of {max_pixels}", index)
    return image


def decode_opened(image: Image.Image, data: bytes, spec: InputSpec, *, index: int | None = None) -> NDArray[np.float32]:
    """Decode an image `open_image` opened from `data` into (C, H, W) float32 in [0, 1] per `spec`.

    Multi-frame images (GIF, TIFF, APNG, WebP) give their first frame, as viewers show it
    (an APNG whose default image is not part of its animation: the animation's first frame).
    Then `to_model_input` turns the picture a viewer would show into the model's input.
    Raises InvalidImageError (corrupt data), UnsupportedImageError or InputError (see
    `to_model_input`).
    """
    try:
        if image.info.get("default_image") and getattr(image, "n_frames", 1) > 1:
            image.seek(1)  # APNG: browsers never show a default image that is not a frame
        image.load()  # the first frame
    except Exception as exc:
        raise InvalidImageError(f"corrupt image data ({exc})", index) from None
    return to_model_input(image, spec, index=index, declared=_declared_depth(image, data))


def decode_image(
    data: bytes, spec: InputSpec, *, index: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> NDArray[np.float32]:
    """Decode PNG/JPEG/TIFF/... bytes into (C, H, W) float32 in [0, 1] per `spec`:
    `decode_plain_png` where it applies, else `open_image` then `decode_opened`, with their errors."""
    plain = decode_plain_png(data, spec, max_pixels)
    if plain is not None:
        return plain
    return decode_opened(open_image(data, index=index, max_pixels=max_pixels), data, spec, index=index)


def decode_plain_png(data: bytes, spec: InputSpec, max_pixels: int) -> NDArray[np.float32] | None:
    """The common case, fast: an 8-bit grey or RGB PNG of the model's size, decoded by libspng
    (pyspng; 4x Pillow on 28x28, bench/results/decoders.md). None for every other image.

    Decided from the file's chunks (`_plain_png_header`) before any pixel is decoded: no
    transparency, EXIF, text, animation or anything else Pillow would read into the picture or
    refuse. The pixels are then exactly Pillow's (tests/model/test_images.py compares the two
    on every kind of PNG, and on broken ones); whatever libspng cannot decode goes to Pillow,
    which says what is wrong.
    """
    header = _plain_png_header(data)
    if header is None:
        return None
    width, height = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:8], "big")
    depth, colour = header[8], header[9]
    if depth != 8 or colour not in _PNG_COLOUR or (width, height) != (spec.width, spec.height):
        return None
    if width * height > max_pixels:
        return None
    try:
        pixels = pyspng.load(data, _PNG_COLOUR[colour])  # (H, W) or (H, W, 3) uint8
    except Exception:  # libspng's refusals: Pillow decides, and names what is wrong
        return None
    if _PNG_COLOUR[colour] != spec.colour_mode:  # Pillow's own conversion (to grey: ITU-R 601-2 luma)
        pixels = np.asarray(Image.fromarray(pixels).convert(spec.colour_mode))
    values = np.asarray(pixels, dtype=np.float32) / 255.0
    return values.reshape(spec.height, spec.width, spec.channels).transpose(2, 0, 1)


def _plain_png_header(data: bytes) -> bytes | None:
    """The IHDR data of a PNG made of IHDR, chunks from _INERT_PNG_CHUNKS, the image data
    (IDAT) and IEND, in that order, with every chunk before the data of the length and CRC
    Pillow accepts, and image data that inflates with its checksum right (libspng, as pyspng
    sets it up, skips zlib's checksum; Pillow's decoder refuses a stream that fails it);
    None for any other file."""
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 33:
        return None
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if width * height > _FAST_PNG_PIXELS or data[24] != 8 or data[25] not in _PNG_COLOUR or data[28] != 0:
        return None  # big, deep, transparent-capable or interlaced: Pillow's
    offset, header, image_data = len(_PNG_SIGNATURE), None, []
    while offset + 12 <= len(data):
        length, kind = int.from_bytes(data[offset : offset + 4], "big"), data[offset + 4 : offset + 8]
        end = offset + 8 + length
        body = data[offset + 8 : end]
        if kind == b"IDAT":
            image_data.append(body)
        elif kind == b"IEND":
            break
        elif image_data or kind not in _INERT_PNG_CHUNKS or (kind == b"IHDR") != (header is None):
            return None  # a chunk after the data (Pillow reads those too), or one that may change the picture
        elif len(body) not in _INERT_PNG_CHUNKS[kind] or zlib.crc32(data[offset + 4 : end]) != int.from_bytes(
            data[end : end + 4], "big"
        ):
            return None
        elif kind == b"IHDR":
            header = body
        offset = end + 4
    else:
        return None  # no IEND
    return header if header is not None and _inflates(b"".join(image_data), _raw_size(header)) else None


def _raw_size(header: bytes) -> int:
    """Bytes of an 8-bit, non-interlaced PNG's filtered scanlines: height x (1 + width x samples)."""
    width, height = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:8], "big")
    return height * (1 + width * (3 if header[9] == 2 else 1))


def _inflates(stream: bytes, size: int) -> bool:
    """Whether the zlib stream inflates, checksum right, to at most `size` bytes: never more is
    inflated, so a small file declaring a huge or compressed-bomb image costs nothing."""
    inflater = zlib.decompressobj()
    try:
        inflater.decompress(stream, size + 1)
    except zlib.error:
        return False
    return inflater.eof and not inflater.unconsumed_tail


def _known_format(data: bytes) -> str | None:
    """The name of a format Pillow recognises in `data` but `IMAGE_FORMATS` leaves closed, if any.

    Only each plugin's signature check runs (on the first 16 bytes, as Image.open reads them):
    nothing is parsed or decoded.
    """
    Image.init()  # every plugin registered, to name what it recognises
    prefix = data[:16]
    for name in Image.ID:
        if name in IMAGE_FORMATS or name not in Image.OPEN:
            continue
        accept = Image.OPEN[name][1]
        try:
            if accept is not None and accept(prefix):
                return name
        except Exception:  # a signature check that needs more than the prefix
            continue
    return None


def to_model_input(
    image: Image.Image, spec: InputSpec, *, index: int | None = None, declared: Depth | None = None
) -> NDArray[np.float32]:
    """A decoded Pillow image of any mode -> (C, H, W) float32 in [0, 1] per `spec`.

    In this order, so that the model scores the picture a viewer shows:
    1. the EXIF orientation is applied (phones store photos turned, with Orientation=6);
    2. samples of more than 8 bits are scaled by their white level (`_white_level`): the
       declared significant bits (PNG sBIT) or maximum (TIFF MaxSampleValue), else the full
       16-bit range; floating-point samples must be finite and in [0, 1];
    3. transparency (an alpha channel, a transparent palette entry or colour key) is
       composited over `spec.background`;
    4. the colours are converted to `spec.colour_mode` (grey by ITU-R 601 luma; CIELAB
       through a colorimetric transform), and the size per `spec.resize`, after stretching
       or centre-cropping to the model's aspect ratio (`spec.fit`).
    Embedded ICC profiles are not applied: colours are read as sRGB.

    Raises InputError for NaN or infinite pixels, values outside their range and 16-bit
    images whose white level is ambiguous; UnsupportedImageError for samples with no
    standard white level (32-bit or signed integers) and modes Pillow cannot convert.
    """
    declared = declared or Depth()
    image = _upright(image)
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _high_depth_to_8bit(image, declared, index)
    elif declared.low_bytes is not None and declared.low_bytes.shape == np.asarray(image).shape:
        image = _colour16_to_8bit(image, declared, index)
    elif declared.bits > 8:
        _check_reduced_depth(image, index)
    image = _flatten(image, spec.background)
    image = _convert(image, spec.colour_mode, index)
    if image.size != (spec.width, spec.height):
        if spec.resize == "error":
            width, height = image.size
            raise InputError(f"size {width}x{height} differs from the model's {spec.width}x{spec.height}", index)
        size, resample = (spec.width, spec.height), _RESAMPLE[spec.resize]
        image = ImageOps.fit(image, size, resample) if spec.fit == "center_crop" else image.resize(size, resample)
    pixels = np.asarray(image, dtype=np.float32) / 255.0  # (H, W) or (H, W, C)
    return pixels.reshape(spec.height, spec.width, spec.channels).transpose(2, 0, 1)


@dataclass(frozen=True)
class Depth:
    """What a file says about its samples: bits per sample, and the white level it declares."""

    bits: int = 8
    white: int | None = None  # PNG sBIT (2**bits - 1) or TIFF MaxSampleValue
    from_sbit: bool = False  # PNG's samples may be scaled to the full range despite sBIT (its spec says so)
    signed: bool = False  # TIFF SampleFormat 2
    low_bytes: NDArray[np.uint8] | None = None  # a 16-bit colour PNG's low bytes, which Pillow drops


def _declared_depth(image: Image.Image, data: bytes) -> Depth:
    if image.format == "PNG":
        chunks = _png_chunks(data)
        ihdr, sbit = chunks.get(b"IHDR", b""), chunks.get(b"sBIT", b"")
        bits = ihdr[8] if len(ihdr) >= 9 else 8
        colour = sbit[:3] if len(sbit) != 2 else sbit[:1]  # grey+alpha: (grey, alpha); others end with alpha
        significant = max(colour, default=0)
        if 0 < significant < bits:
            low = _png_low_bytes(data) if image.mode in ("RGB", "RGBA") and bits == 16 else None
            return Depth(bits, 2**significant - 1, from_sbit=True, low_bytes=low)
        return Depth(bits)
    if image.format == "TIFF":
        tags = getattr(image, "tag_v2", {})
        bits = max(_as_tuple(tags.get(258, 8)))
        maximum = tags.get(281)  # MaxSampleValue
        signed = 2 in _as_tuple(tags.get(339, 1))  # SampleFormat: 1 unsigned, 2 signed, 3 floating point
        return Depth(bits, int(max(_as_tuple(maximum))) if maximum is not None else None, signed=signed)
    return Depth()


def _png_low_bytes(data: bytes) -> NDArray[np.uint8] | None:
    """The low bytes of a 16-bit RGB(A) PNG's samples, (H, W, C), which Pillow's 8-bit RGB drops.

    Pillow unpacks these PNGs with the raw mode "RGB;16B" (keep each big-endian sample's high
    byte); decoding the same stream as "RGB;16L" keeps the other byte. PNG's filters see the
    same 6 (8) bytes per pixel either way. None for an animated PNG, whose later frames this
    does not cover.
    """
    image = Image.open(io.BytesIO(data), formats=("PNG",))
    if getattr(image, "n_frames", 1) > 1 or not all(str(t.args).endswith(";16B") for t in image.tile):
        return None
    image.tile = [t._replace(args=str(t.args).replace(";16B", ";16L")) for t in image.tile]
    image.load()
    return np.asarray(image)


def _as_tuple(value: object) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, tuple) else (int(value),)  # type: ignore[call-overload]


def _png_chunks(data: bytes) -> dict[bytes, bytes]:
    """The chunks of a PNG before its image data (IHDR, sBIT, ...), by type."""
    chunks: dict[bytes, bytes] = {}
    offset = 8  # past the signature
    while offset + 8 <= len(data):
        length, kind = int.from_bytes(data[offset : offset + 4], "big"), data[offset + 4 : offset + 8]
        if kind == b"IDAT":
            break
        chunks[kind] = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    return chunks


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF Orientation says, as every viewer shows it."""
    try:
        if image.getexif().get(ExifTags.Base.Orientation, 1) in (1, None):
            return image
        return ImageOps.exif_transpose(image)
    except Exception:  # unreadable EXIF: viewers show the stored pixels, and so do we
        return image


def _high_depth_to_8bit(image: Image.Image, declared: Depth, index: int | None) -> Image.Image:
    """Modes I;16*, I and F -> 8-bit "L" ("LA" with a transparent colour key), scaled by the white level."""
    raw = np.asarray(image)
    if image.mode == "F":
        if not np.isfinite(raw).all():
            raise InputError("image holds NaN or infinite pixel values", index)
        low, high = float(raw.min()), float(raw.max())
        if low < 0.0 or high > 1.0:
            raise InputError(f"floating-point pixel values must lie in [0, 1], got [{low:g}, {high:g}]", index)
        grey = raw.astype(np.float64)
    else:
        if (declared.signed or raw.min() < 0) and declared.white is None:
            raise UnsupportedImageError(
                "signed integer pixels have no standard white level; send unsigned, or declare the white level "
                "(TIFF MaxSampleValue)",
                index,
            )
        if raw.min() < 0:
            raise InputError(f"pixel value {int(raw.min())} is below 0, the image's black", index)
        grey = raw / np.float64(_white_level(image, declared, raw, index))
    grey_image = Image.fromarray(np.clip(grey * 255.0 + 0.5, 0, 255).astype(np.uint8))
    key = image.info.get("transparency")
    if isinstance(key, int):  # a 16-bit grey PNG's transparent value (tRNS)
        alpha = Image.fromarray(np.where(raw == key, 0, 255).astype(np.uint8))
        return Image.merge("LA", (grey_image, alpha))
    return grey_image


def _colour16_to_8bit(image: Image.Image, declared: Depth, index: int | None) -> Image.Image:
    """A 16-bit RGB(A) PNG with sBIT, from its full samples (high and low bytes), scaled by its
    white level like grey (`_white_level`); alpha is PNG's full 16-bit range."""
    assert declared.low_bytes is not None
    raw = np.asarray(image).astype(np.int64) << 8 | declared.low_bytes  # (H, W, C) 16-bit samples
    colour = raw[..., :3]
    scaled = colour / np.float64(_white_level(image, declared, colour, index))
    channels = np.clip(scaled * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if image.mode == "RGBA":
        channels = np.concatenate([channels, np.asarray(image)[..., 3:]], axis=-1)
    return Image.fromarray(channels, image.mode)


def _white_level(image: Image.Image, declared: Depth, raw: NDArray[np.generic], index: int | None) -> int:
    """The integer value that means white, for images of more than 8 bits per sample.

    PNG's sBIT does not change what samples mean: its spec has encoders scale b-bit data to the
    full 16 bits (shifted left, or scaled), and viewers show the samples over 65535. Data that
    follows that rule is read so, as viewers show it; data that cannot have been scaled so and
    lies within b bits sits in the low bits, as 10- and 12-bit sensor software writes it, and
    is read with white 2**b - 1. TIFF's MaxSampleValue is the white level itself.
    """
    peak = int(raw.max())
    if declared.white is not None:
        if declared.from_sbit:
            bits = declared.white.bit_length()
            if peak > declared.white or _scaled_to_16_bits(raw, bits):
                return 65535  # PNG's own rule: samples scaled to the full 16-bit range
            return declared.white
        if peak <= declared.white:
            return declared.white
        raise InputError(f"pixel value {peak} is over the image's MaxSampleValue {declared.white}", index)
    if image.mode == "I" and declared.bits > 16:
        raise UnsupportedImageError(
            f"{declared.bits}-bit integer pixels have no standard white level; send 8- or 16-bit images, "
            "floating point in [0, 1], or declare the white level (TIFF MaxSampleValue)",
            index,
        )
    if 0 < peak < _AMBIGUOUS_BELOW:
        raise InputError(_ambiguous(peak), index)
    return 65535


def _scaled_to_16_bits(raw: NDArray[np.generic], bits: int) -> bool:
    """Whether every sample is b-bit data scaled to 16 bits as PNG's spec (12.5, sBIT) has
    encoders do it: shifted left, left bit replication, or linear scaling."""
    samples = raw.astype(np.int64)
    high = samples >> (16 - bits)  # the b significant bits
    replicated = np.zeros_like(high)
    for shift in range(16 - bits, -bits, -bits):
        replicated |= high << shift if shift >= 0 else high >> -shift
    linear = np.rint(high * (65535 / (2**bits - 1))).astype(np.int64)
    ok = (samples == high << (16 - bits)) | (samples == replicated) | (samples == linear)
    return bool(ok.all())


def _ambiguous(peak: int) -> str:
    return (
        f"16-bit image whose largest value {peak} fits in 12 bits, and no significant bits are declared: "
        "is it 12-bit data (white 4095) or a dark 16-bit image (white 65535)? Scale it to 0-65535, declare its "
        "bits (PNG sBIT, TIFF MaxSampleValue), or send 8 bits"
    )


def _check_reduced_depth(image: Image.Image, index: int | None) -> None:
    """16-bit colour images reach us as their high bytes (Pillow's conversion): refuse the
    ambiguous ones, whose values all lie below 4096, as `_white_level` does for grey."""
    peak = int(np.asarray(image.convert("RGB")).max())
    if 0 < peak < _AMBIGUOUS_BELOW >> 8:
        raise InputError(
            "16-bit colour image whose values all lie below 4096, in bits that 8-bit conversion drops "
            "(12-bit data?): scale it to 0-65535, or send 8 bits",
            index,
        )


def _flatten(image: Image.Image, background: tuple[float, ...]) -> Image.Image:
    """Composite transparency over the background, as a viewer shows it on that background."""
    if image.mode not in _ALPHA_MODES and "transparency" not in image.info:
        return image
    rgba = image.convert("LA" if image.mode == "La" else "RGBA").convert("RGBA")  # La converts to LA only
    colour = background * 3 if len(background) == 1 else background
    fill = (*(round(v * 255) for v in colour), 255)
    return Image.alpha_composite(Image.new("RGBA", rgba.size, fill), rgba).convert("RGB")


def _convert(image: Image.Image, mode: str, index: int | None) -> Image.Image:
    """8-bit image of any mode -> `mode` ("L" or "RGB")."""
    if image.mode == "LAB":  # Pillow's own LAB conversion copies channels; go through a colour transform
        try:
            from PIL import ImageCms
        except ImportError:
            raise UnsupportedImageError("CIELAB images need Pillow with LittleCMS", index) from None
        transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
        image = ImageCms.applyTransform(image, transform) or image
    try:
        return image.convert(mode)
    except ValueError:
        raise UnsupportedImageError(f"images of mode {image.mode!r} cannot be converted to {mode!r}", index) from None


def json_array(values: object) -> NDArray[Any] | None:
    """Nested lists as JSON decodes them -> an array, with no value cast from another kind:
    None for ragged lists, integers past 64 bits, and numbers mixed with booleans (numpy would
    read true as 1); strings, nulls and all-boolean lists keep their dtype for the caller to refuse."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError, OverflowError, RecursionError):
        return None
    if array.dtype.kind in "iuf" and array.ndim > 0 and isinstance(values, list):
        leaves: Iterable[object] = values
        for _ in range(array.ndim - 1):  # rectangular, as asarray found it: flatten one level at a time
            leaves = itertools.chain.from_iterable(leaves)  # type: ignore[arg-type]
        if bool in set(map(type, leaves)):
            return None
    return array


def from_array(values: object, spec: InputSpec, *, index: int | None = None) -> NDArray[np.float32]:
    """Check an array of pixel values in [0, 1] and shape it (C, H, W).

    Accepted shapes: (C, H, W), (H, W) for one channel, or flat (C*H*W,). Only numbers:
    strings, nulls and booleans are refused, never cast.
    """
    numbers = json_array(values)
    if numbers is None or numbers.dtype.kind not in "iuf":  # strings, nulls, booleans, ragged lists, big ints
        raise InputError("array is not a rectangular array of numbers", index)
    array = numbers.astype(np.float64)  # checked before the cast to float32, which could overflow
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
    return array.astype(np.float32)


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
    # Checked in the array's own float width, before the cast to float32 (which could overflow).
    bad = ~np.isfinite(values).reshape(len(values), -1).all(axis=1)
    if bad.any():
        raise InputError("array holds NaN or infinite values", int(np.argmax(bad)))
    low, high = spec.value_range
    outside = ((values < low) | (values > high)).reshape(len(values), -1).any(axis=1)  # type: ignore[operator]
    if outside.any():
        raise InputError(f"array values must lie in [{low}, {high}]", int(np.argmax(outside)))
    return values.astype(np.float32, copy=False)


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
COLORMAP = (
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
    rgb = COLORMAP[np.round(scaled * 255.0).astype(np.intp)]  # (H, W, 3)
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

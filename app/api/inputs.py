"""Request bodies -> model inputs: raw image bodies, multipart files, or JSON.

    Content-Type: image/png (or any image/*)   one image
    Content-Type: multipart/form-data          one or more files, any field names
    Content-Type: application/json             {"images": ["<base64>", ...]} or {"arrays": [[...], ...]}

The latent tools (interpolate, traverse) also take {"latents": [[...], ...]} (`read_codes`).
Every image is converted to the model's input spec by model/preprocess.py, the code
training used. Errors name the image by its position in the request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import io
import json
import math
import os
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from fastapi import Request
from numpy.typing import NDArray
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from app.errors import (
    ServiceError,
    body_too_large,
    check_image_count,
    empty_body,
    too_many_images,
    unsupported_media_type,
)
from app.serving.operations import Codes
from app.settings import Settings
from app.tracing import traced
from model.bundle import InputSpec
from model.errors import InputError, InvalidImageError
from model.preprocess import decode_opened, decode_plain_png, from_array, from_batch, open_image
from wire.v1 import LatentsRequest

NPY = "application/x-npy"
# A request whose images declare at most this many pixels in all (their headers, before any
# decoding) is decoded on the event loop: about 10 ms of work, less than a thread hop costs
# a small request. Larger ones decode one image at a time in worker threads (Pillow releases
# the GIL), so the server keeps answering, and a deadline or a disconnect between two images
# abandons the rest.
INLINE_PIXELS = 1 << 20
# Text fields of a multipart body are ignored (files are the images); at most this many, as
# Starlette's default, each at most MAX_FIELD_BYTES.
MAX_FORM_FIELDS = 1000
MAX_FIELD_BYTES = 1024 * 1024
_MAX_INT_DIGITS = 400  # no number the API takes has more digits (floats reach 1.8e308)
IMAGE_BODIES = f"an image (image/png, image/jpeg, ...), multipart/form-data files, application/json or {NPY}"


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def decimal_length(text: str | None) -> int | None:
    """A length header's value: ASCII digits only (str.isdigit also takes "²" and "٣"), at most
    18 of them (so int() never meets Python's digit limit); None for anything else."""
    if text is None or not 0 < len(text) <= 18 or not text.isascii() or not text.isdigit():
        return None
    return int(text)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes `limit` bytes, and decompressed
    as its Content-Encoding says (`decompress`)."""
    declared = decimal_length(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise body_too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
    body = decompress(b"".join(chunks), request.headers.get("content-encoding"), limit)
    request._body = body  # what Starlette's own body() caches, so request.form() can parse it
    return body


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo a request's Content-Encoding (gzip or deflate, as tritonclient sends), bounded by
    `limit` after decompression too (413), so a compressed bomb costs nothing."""
    if not encoding or encoding.strip().lower() == "identity":
        return body
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding.strip().lower())
    if wbits is None:
        raise ServiceError(
            415, "unsupported-encoding", "Unsupported media type",
            f"Content-Encoding {encoding!r} is not supported; use gzip or deflate",
        )  # fmt: skip
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ServiceError(
            400, "invalid-encoding", "Invalid body", f"the body is not valid {encoding} data ({exc})"
        ) from None
    if len(data) > limit:
        raise ServiceError(
            413, "body-too-large", "Payload too large",
            f"the decompressed body is over the limit of {limit} bytes (VAESERVE_MAX_BODY_BYTES)",
        )  # fmt: skip
    return data


def _json_integer(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits is out of range")
    return int(text)


async def read_json(request: Request, limit: int) -> Any:
    body = await read_body(request, limit)
    if not body:
        raise empty_body()
    try:
        return json.loads(body, parse_int=_json_integer)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, and numbers out of range
        raise ServiceError(400, "invalid-json", "Invalid JSON", f"the body is not valid JSON ({exc})") from None
    except RecursionError:
        raise ServiceError(400, "invalid-json", "Invalid JSON", "the JSON body is nested too deeply") from None


@traced("vaeserve.parse")
async def read_images(request: Request, spec: InputSpec, settings: Settings) -> NDArray[np.float32]:
    """All images of a request as float32 (N, C, H, W) in [0, 1]."""
    kind = media_type(request)
    if kind.startswith("image/"):
        body = await read_body(request, settings.max_body_bytes)
        if not body:
            raise empty_body()
        images = await decode_images([body], spec, settings)
    elif kind == "multipart/form-data":
        images = await _read_multipart(request, spec, settings)
    elif kind == "application/json":
        images = await _read_json_images(await read_json(request, settings.max_body_bytes), spec, settings)
    elif kind == NPY:
        return _read_npy(await read_body(request, settings.max_body_bytes), spec, settings)
    else:
        raise unsupported_media_type(kind, IMAGE_BODIES)
    return np.stack(images)


async def read_codes(request: Request, spec: InputSpec, settings: Settings) -> Codes:
    """Images in any form `read_images` takes, or JSON {"latents": [[...], ...]} (N, D)."""
    if media_type(request) != "application/json":
        return Codes(images=await read_images(request, spec, settings))
    payload = await read_json(request, settings.max_body_bytes)
    if not (isinstance(payload, dict) and "latents" in payload):
        return Codes(images=np.stack(await _read_json_images(payload, spec, settings)))
    if {"images", "arrays"} & payload.keys():
        raise InputError('give "latents" or images, not both')
    latents = LatentsRequest.model_validate(payload).latents
    check_image_count(len(latents), settings.max_images_per_request, "latents")
    if len({len(row) for row in latents}) != 1:
        raise InputError("every latent must have the same number of values")
    values = np.asarray(latents, dtype=np.float64)
    if np.any(np.abs(values) > np.finfo(np.float32).max):  # NaN compares False: check_latents refuses it
        raise InputError("latents hold values outside the float32 range")
    return Codes(latents=values.astype(np.float32))


def _read_npy(body: bytes, spec: InputSpec, settings: Settings) -> NDArray[np.float32]:
    """A .npy file: (N, C, H, W) or (N, H, W), uint8 or float in [0, 1]; no pickles.

    The header is read and checked first: a shape whose size does not match the bytes that
    follow is refused before anything is allocated (np.load would allocate what it claims).
    """
    if not body:
        raise empty_body()
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(stream)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise _invalid_npy(str(exc)) from None
    if dtype.kind not in "uif":  # objects (pickles), strings, structured, subarray and complex dtypes
        raise InputError(f"array dtype {dtype} is not uint8 or floating point")
    if any(d < 0 for d in shape):
        raise _invalid_npy(f"shape {list(shape)} has a negative dimension")
    data = memoryview(body)[stream.tell() :]
    needed = math.prod(shape) * dtype.itemsize
    if needed != len(data):
        raise _invalid_npy(f"shape {list(shape)} of {dtype} needs {needed} bytes, the body has {len(data)}")
    if len(shape) >= 3:
        check_image_count(shape[0], settings.max_images_per_request)
    values = np.frombuffer(data, dtype, math.prod(shape)).reshape(shape, order="F" if fortran_order else "C")
    return from_batch(values, spec)


def _invalid_npy(reason: str) -> ServiceError:
    return ServiceError(400, "invalid-npy", "Invalid array", f"the body is not a .npy array ({reason})")


async def decode_images(blobs: list[bytes], spec: InputSpec, settings: Settings) -> list[NDArray[np.float32]]:
    """Encoded images -> (C, H, W) float32 each, in order; errors name the image's position.

    Plain 8-bit PNGs of the model's size decode at once (model/preprocess.decode_plain_png);
    every other header is read first (pixel limits checked before any decoding). Up to
    INLINE_PIXELS declared pixels in all decode here; more, each image in a worker thread in
    turn, so a cancellation (deadline, disconnect) abandons the images not yet decoded.
    """
    limit = settings.max_pixels_per_image
    decoded: list[NDArray[np.float32] | None] = [decode_plain_png(data, spec, limit) for data in blobs]  # most
    opened = {i: open_image(data, index=i, max_pixels=limit) for i, data in enumerate(blobs) if decoded[i] is None}
    inline = sum(image.width * image.height for image in opened.values()) <= INLINE_PIXELS
    loop = asyncio.get_running_loop()
    for i, image in opened.items():
        work = functools.partial(decode_opened, image, blobs[i], spec, index=i)
        decoded[i] = work() if inline else await loop.run_in_executor(_decoder_pool(), work)
    return [image for image in decoded if image is not None]


@functools.cache
def _decoder_pool() -> ThreadPoolExecutor:
    """One thread per core for decoding large images: their memory is bounded by the cores."""
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="vaeserve-decode")


async def _read_multipart(request: Request, spec: InputSpec, settings: Settings) -> list[NDArray[np.float32]]:
    body = await read_body(request, settings.max_body_bytes)
    if not body:
        raise empty_body()
    limit = settings.max_images_per_request
    try:
        form = await request.form(max_files=limit + 1, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES)
    except HTTPException as exc:  # Starlette's answer to a malformed body or too many parts
        raise _multipart_error(str(exc.detail), limit) from None
    try:
        uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        check_image_count(len(uploads), limit)
        return await decode_images([await upload.read() for upload in uploads], spec, settings)
    finally:
        await form.close()


def _multipart_error(reason: str, limit: int) -> ServiceError:
    """Starlette's refusal of a multipart body, in words naming the limit it hit."""
    if reason.startswith("Too many files"):
        return too_many_images(None, limit)
    if reason.startswith("Too many fields"):
        detail = (f"the multipart body has more than {MAX_FORM_FIELDS} text fields, the limit; text fields are "
                  "ignored: send images as file parts (with a filename)")  # fmt: skip
    elif re.match(r"(Part|Field) exceeded maximum size", reason):
        detail = (f"a text field of the multipart body is over {MAX_FIELD_BYTES} bytes, the limit per field; "
                  "send images as file parts (with a filename)")  # fmt: skip
    else:
        detail = f"the multipart body cannot be parsed ({reason.rstrip('.')})"
    return ServiceError(400, "invalid-multipart", "Invalid multipart body", detail)


async def _read_json_images(payload: Any, spec: InputSpec, settings: Settings) -> list[NDArray[np.float32]]:
    if not isinstance(payload, dict) or not ({"images", "arrays"} & payload.keys()):
        raise InputError('the JSON body must be an object with "images" (base64 strings) or "arrays"')
    if {"images", "arrays"} <= payload.keys():
        raise InputError('send "images" or "arrays", not both')
    key = "images" if "images" in payload else "arrays"
    items = payload[key]
    if not isinstance(items, list):
        raise InputError(f'"{key}" must be a list')
    check_image_count(len(items), settings.max_images_per_request)
    if key == "arrays":
        return [from_array(item, spec, index=i) for i, item in enumerate(items)]
    return await decode_images([_base64(item, i) for i, item in enumerate(items)], spec, settings)


_WHITESPACE = re.compile(r"[ \t\r\n\f\v]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _base64(item: object, index: int) -> bytes:
    """Standard base64 (RFC 4648), or its URL-safe alphabet; whitespace (MIME's line breaks,
    RFC 2045) is ignored and the padding may be left out. Anything else is named."""
    if not isinstance(item, str):
        raise InvalidImageError("must be a base64 string", index)
    if item.startswith("data:") and "," in item:  # a data URL, as browsers write them
        item = item.split(",", 1)[1]
    text = _WHITESPACE.sub("", item)
    if "-" in text or "_" in text:
        if "+" in text or "/" in text:
            raise InvalidImageError("not valid base64: it mixes the standard (+/) and URL-safe (-_) alphabets", index)
        text = text.translate(str.maketrans("-_", "+/"))
    bad = _BASE64.match(text)
    assert bad is not None  # the pattern matches the empty prefix
    if bad.end() != len(text):
        char = text[bad.end()]
        raise InvalidImageError(f"not valid base64: character {char!r} at position {bad.end()}", index)
    if len(text.rstrip("=")) % 4 == 1:
        raise InvalidImageError("not valid base64: its length is not a whole number of bytes", index)
    try:
        return base64.b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImageError(f"not valid base64 ({exc})", index) from None

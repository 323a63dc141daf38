"""Request bodies -> model inputs: raw image bodies, multipart files, or JSON.

    Content-Type: image/png (or any image/*)   one image
    Content-Type: multipart/form-data          one or more files, any field names
    Content-Type: application/json             {"images": ["<base64>", ...]} or {"arrays": [[...], ...]}

The latent tools (interpolate, traverse) also take {"latents": [[...], ...]} (`read_codes`).
Every image is converted to the model's input spec by model/preprocess.py, the code
training used. Errors name the image by its position in the request.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
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
from model.preprocess import decode_image, from_array, from_batch
from wire.v1 import LatentsRequest

NPY = "application/x-npy"
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
    """The whole body, refused with 413 as soon as it passes `limit` bytes."""
    declared = decimal_length(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise body_too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # what Starlette's own body() caches, so request.form() can parse it
    return body


async def read_json(request: Request, limit: int) -> Any:
    body = await read_body(request, limit)
    if not body:
        raise empty_body()
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
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
        images = [_decode(body, spec, 0, settings)]
    elif kind == "multipart/form-data":
        images = await _read_multipart(request, spec, settings)
    elif kind == "application/json":
        images = _read_json_images(await read_json(request, settings.max_body_bytes), spec, settings)
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
        return Codes(images=np.stack(_read_json_images(payload, spec, settings)))
    if {"images", "arrays"} & payload.keys():
        raise InputError('give "latents" or images, not both')
    latents = LatentsRequest.model_validate(payload).latents  # the operations check how many
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


def _decode(data: bytes, spec: InputSpec, index: int, settings: Settings) -> NDArray[np.float32]:
    return decode_image(data, spec, index=index, max_pixels=settings.max_pixels_per_image)


async def _read_multipart(request: Request, spec: InputSpec, settings: Settings) -> list[NDArray[np.float32]]:
    body = await read_body(request, settings.max_body_bytes)
    if not body:
        raise empty_body()
    limit = settings.max_images_per_request
    try:
        form = await request.form(max_files=limit + 1, max_fields=limit + 1)
    except HTTPException as exc:  # Starlette's answer to a malformed body or too many parts
        if str(exc.detail).startswith(("Too many files", "Too many fields")):
            raise too_many_images(None, limit) from None
        raise ServiceError(
            400, "invalid-multipart", "Invalid multipart body", "the multipart body cannot be parsed"
        ) from None
    try:
        uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        check_image_count(len(uploads), limit)
        return [_decode(await upload.read(), spec, i, settings) for i, upload in enumerate(uploads)]
    finally:
        await form.close()


def _read_json_images(payload: Any, spec: InputSpec, settings: Settings) -> list[NDArray[np.float32]]:
    if not isinstance(payload, dict) or not ({"images", "arrays"} & payload.keys()):
        raise InputError('the JSON body must be an object with "images" (base64 strings) or "arrays"')
    key = "images" if "images" in payload else "arrays"
    items = payload[key]
    if not isinstance(items, list):
        raise InputError(f'"{key}" must be a list')
    check_image_count(len(items), settings.max_images_per_request)
    if key == "arrays":
        return [from_array(item, spec, index=i) for i, item in enumerate(items)]
    return [_decode(_base64(item, i), spec, i, settings) for i, item in enumerate(items)]


def _base64(item: object, index: int) -> bytes:
    if not isinstance(item, str):
        raise InvalidImageError("must be a base64 string", index)
    if item.startswith("data:") and "," in item:  # a data URL, as browsers write them
        item = item.split(",", 1)[1]
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImageError("not valid base64", index) from None

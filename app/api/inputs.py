"""Request bodies -> model inputs: raw image bodies, multipart files, or JSON.

    Content-Type: image/png (or any image/*)   one image
    Content-Type: multipart/form-data          one or more files, any field names
    Content-Type: application/json             {"images": ["<base64>", ...]} or {"arrays": [[...], ...]}

Every image is converted to the model's input spec by model/preprocess.py, the code
training used. Errors name the image by its position in the request.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from typing import Any

import numpy as np
from fastapi import Request
from numpy.typing import NDArray
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from app.errors import ServiceError, body_too_large, empty_body, too_many_images, unsupported_media_type
from app.settings import Settings
from app.tracing import traced
from model.bundle import InputSpec
from model.errors import InputError, InvalidImageError
from model.preprocess import decode_image, from_array, from_batch

NPY = "application/x-npy"
IMAGE_BODIES = f"an image (image/png, image/jpeg, ...), multipart/form-data files, application/json or {NPY}"


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
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


def _read_npy(body: bytes, spec: InputSpec, settings: Settings) -> NDArray[np.float32]:
    """A .npy file: (N, C, H, W) or (N, H, W), uint8 or float in [0, 1]; no pickles."""
    if not body:
        raise empty_body()
    try:
        values = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ServiceError(400, "invalid-npy", "Invalid array", f"the body is not a .npy array ({exc})") from None
    if values.ndim >= 3 and len(values) > settings.max_images_per_request:
        raise too_many_images(len(values), settings.max_images_per_request)
    return from_batch(values, spec)


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
        if not uploads:
            raise ServiceError(400, "no-files", "No files", "the multipart body holds no files")
        if len(uploads) > limit:
            raise too_many_images(len(uploads), limit)
        return [_decode(await upload.read(), spec, i, settings) for i, upload in enumerate(uploads)]
    finally:
        await form.close()


def _read_json_images(payload: Any, spec: InputSpec, settings: Settings) -> list[NDArray[np.float32]]:
    if not isinstance(payload, dict) or not ({"images", "arrays"} & payload.keys()):
        raise InputError('the JSON body must be an object with "images" (base64 strings) or "arrays"')
    key = "images" if "images" in payload else "arrays"
    items = payload[key]
    if not isinstance(items, list) or not items:
        raise InputError(f'"{key}" must be a non-empty list')
    if len(items) > settings.max_images_per_request:
        raise too_many_images(len(items), settings.max_images_per_request)
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

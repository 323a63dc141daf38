"""Every error the service gives, mapped in one place: RFC 9457 problem details, and
{"error": "..."} under /v2 as the Open Inference Protocol wants.

Core code raises domain errors (model/errors.py, app/registry.py, app/oip.py); the handlers
here turn them into `application/problem+json` with fixed titles, or into the v2 form with
the same detail. Stack traces never leave the process.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.batching import QueueFullError
from app.oip import ProtocolError
from app.registry import ModelNotFoundError
from model.errors import InputError, InputTooLargeError, InvalidImageError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    """An error the service answers with as it is: status, a short slug and the detail."""

    def __init__(self, status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers or {}


def problem_document(status: int, slug: str, title: str, detail: str) -> dict[str, Any]:
    return {"type": f"urn:vaeserve:problem:{slug}", "title": title, "status": status, "detail": detail}


def is_v2(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def error_document(path: str, status: int, slug: str, title: str, detail: str) -> tuple[int, dict[str, Any], str]:
    """(status, body, media type) of an error on `path`: a problem document, or v2's {"error": detail}.

    v2 answers a request that is readable but invalid with 400, where v1 says 422.
    """
    if is_v2(path):
        return (400 if status == 422 else status), {"error": detail}, "application/json"
    return status, problem_document(status, slug, title, detail), PROBLEM_JSON


def problem(
    request: Request, status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    status, body, media = error_document(request.url.path, status, slug, title, detail)
    return JSONResponse(body, status_code=status, media_type=media, headers=headers)


def empty_body() -> ProblemError:
    return ProblemError(400, "empty-body", "Empty body", "the request has no body")


def unsupported_media_type(content_type: str, accepted: str) -> ProblemError:
    return ProblemError(
        415, "unsupported-media-type", "Unsupported media type",
        f"content type {content_type or '(none)'!r} is not supported here; send {accepted}",
    )  # fmt: skip


def body_too_large(limit: int) -> ProblemError:
    return ProblemError(413, "body-too-large", "Payload too large", f"the body is over the limit of {limit} bytes")


def too_many_images(count: int | None, limit: int) -> ProblemError:
    """413 for a request over the images-per-request limit; `count` None when parsing stopped at the limit."""
    many = f"{count} images" if count is not None else f"more than {limit} images"
    return ProblemError(413, "too-many-images", "Payload too large", f"{many} is over the limit of {limit} per request")


def install_handlers(app: FastAPI) -> None:
    """Register every exception handler of the service."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem(request, exc.status, exc.slug, exc.title, exc.detail, exc.headers)

    @app.exception_handler(InputTooLargeError)
    async def _too_large(request: Request, exc: InputTooLargeError) -> JSONResponse:
        return problem(request, 413, "image-too-large", "Image too large", str(exc))

    @app.exception_handler(InvalidImageError)
    async def _invalid_image(request: Request, exc: InvalidImageError) -> JSONResponse:
        return problem(request, 400, "invalid-image", "Invalid image", str(exc))

    @app.exception_handler(InputError)
    async def _invalid_input(request: Request, exc: InputError) -> JSONResponse:
        return problem(request, 422, "invalid-input", "Invalid input", str(exc))

    @app.exception_handler(QueueFullError)
    async def _overloaded(request: Request, exc: QueueFullError) -> JSONResponse:
        return problem(
            request,
            503,
            "overloaded",
            "Service unavailable",
            "the server is overloaded; retry later",
            {"Retry-After": "1"},
        )

    @app.exception_handler(ModelNotFoundError)
    async def _not_found(request: Request, exc: ModelNotFoundError) -> JSONResponse:
        return problem(request, 404, "model-not-found", "Model not found", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = " ".join(str(p) for p in first["loc"])
        return problem(request, 422, "invalid-request", "Invalid request", f"{where}: {first['msg']}")

    @app.exception_handler(ValidationError)
    async def _body_validation(request: Request, exc: ValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return problem(request, 422, "invalid-request", "Invalid request", f"body {where}: {first['msg']}")

    @app.exception_handler(ProtocolError)
    async def _protocol(_: Request, exc: ProtocolError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        return problem(request, exc.status_code, "http", title, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(request, 500, "internal", "Internal server error", "the server failed to answer; see its logs")

"""RFC 9457 problem details for /v1: every error the service gives, mapped in one place.

Core code raises domain errors (model/errors.py, app/registry.py); the handlers here turn
them into `application/problem+json` with fixed titles. Stack traces never leave the
process.
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


def problem(status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = problem_document(status, slug, title, detail)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def empty_body() -> ProblemError:
    return ProblemError(400, "empty-body", "Empty body", "the request has no body")


def unsupported_media_type(content_type: str, accepted: str) -> ProblemError:
    return ProblemError(
        415, "unsupported-media-type", "Unsupported media type",
        f"content type {content_type or '(none)'!r} is not supported here; send {accepted}",
    )  # fmt: skip


def body_too_large(limit: int) -> ProblemError:
    return ProblemError(413, "body-too-large", "Payload too large", f"the body is over the limit of {limit} bytes")


def too_many_images(count: int, limit: int) -> ProblemError:
    return ProblemError(
        413, "too-many-images", "Payload too large", f"{count} images is over the limit of {limit} per request"
    )


def install_handlers(app: FastAPI) -> None:
    """Register every exception handler of the service."""

    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem(exc.status, exc.slug, exc.title, exc.detail, exc.headers)

    @app.exception_handler(InputTooLargeError)
    async def _too_large(_: Request, exc: InputTooLargeError) -> JSONResponse:
        return problem(413, "image-too-large", "Image too large", str(exc))

    @app.exception_handler(InvalidImageError)
    async def _invalid_image(_: Request, exc: InvalidImageError) -> JSONResponse:
        return problem(400, "invalid-image", "Invalid image", str(exc))

    @app.exception_handler(InputError)
    async def _invalid_input(_: Request, exc: InputError) -> JSONResponse:
        return problem(422, "invalid-input", "Invalid input", str(exc))

    @app.exception_handler(QueueFullError)
    async def _overloaded(_: Request, exc: QueueFullError) -> JSONResponse:
        return problem(
            503, "overloaded", "Service unavailable", "the server is overloaded; retry later", {"Retry-After": "1"}
        )

    @app.exception_handler(ModelNotFoundError)
    async def _not_found(_: Request, exc: ModelNotFoundError) -> JSONResponse:
        return problem(404, "model-not-found", "Model not found", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = " ".join(str(p) for p in first["loc"])
        return problem(422, "invalid-request", "Invalid request", f"{where}: {first['msg']}")

    @app.exception_handler(ValidationError)
    async def _body_validation(_: Request, exc: ValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return problem(422, "invalid-request", "Invalid request", f"body {where}: {first['msg']}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        return problem(exc.status_code, "http", title, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal", "Internal server error", "the server failed to answer; see its logs")

"""The service's one error type, and every other exception mapped to it in one place.

Code in app/ raises `ServiceError`; model/ raises its domain errors (model/errors.py), which
`as_service_error` translates with the table below. Each protocol renders a ServiceError in
its own form: v1 as an RFC 9457 problem document (`application/problem+json`), v2 as the
Open Inference Protocol's {"error": "..."} (app/api/v2.py). Stack traces never leave the
process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.serving.batching import QueueFullError
from app.serving.registry import ModelNotFoundError
from model.errors import InputError, InputTooLargeError, InvalidImageError, UnsupportedImageError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
Renderer = Callable[["ServiceError"], Response]


class ServiceError(Exception):
    """An answer other than success: status, a short slug and title (v1's problem type), the detail."""

    def __init__(self, status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers or {}


def empty_body() -> ServiceError:
    return ServiceError(400, "empty-body", "Empty body", "the request has no body")


def not_ready() -> ServiceError:
    return ServiceError(503, "not-ready", "Service unavailable", "models are still loading", {"Retry-After": "1"})


def overloaded() -> ServiceError:
    return ServiceError(
        503, "overloaded", "Service unavailable", "the server is overloaded; retry later", {"Retry-After": "1"}
    )


def unsupported_media_type(content_type: str, accepted: str) -> ServiceError:
    return ServiceError(
        415, "unsupported-media-type", "Unsupported media type",
        f"content type {content_type or '(none)'!r} is not supported here; send {accepted}",
    )  # fmt: skip


def body_too_large(limit: int) -> ServiceError:
    return ServiceError(
        413, "body-too-large", "Payload too large",
        f"the body is over the limit of {limit} bytes (VAESERVE_MAX_BODY_BYTES)",
    )  # fmt: skip


def too_many_images(count: int | None, limit: int, what: str = "images") -> ServiceError:
    """413 for a request over the images-per-request limit; `count` None when parsing stopped at the limit."""
    many = f"{count} {what}" if count is not None else f"more than {limit} {what}"
    return ServiceError(
        413, "too-many-images", "Payload too large",
        f"{many} is over the limit of {limit} per request (VAESERVE_MAX_IMAGES_PER_REQUEST)",
    )  # fmt: skip


def check_image_count(count: int, limit: int, what: str = "images") -> None:
    """Every request holds 1 to `limit` images (or latents): zero is a 422 (400 on v2), more a 413,
    on every endpoint."""
    if count == 0:
        raise ServiceError(422, "no-images", "Invalid input", f"the request holds no {what}; send 1 to {limit}")
    if count > limit:
        raise too_many_images(count, limit, what)


def too_much_work(images: int, importance_samples: int, limit: int) -> ServiceError:
    return ServiceError(
        422, "too-much-work", "Invalid request",
        f"{images} images x importance_samples {importance_samples} = {images * importance_samples} is over the "
        f"limit of {limit} importance samples per request (VAESERVE_MAX_TOTAL_IMPORTANCE_SAMPLES); "
        "send fewer images or a smaller importance_samples",
    )  # fmt: skip


def too_much_output(images: int, pngs: int, bound: int, limit: int) -> ServiceError:
    return ServiceError(
        422, "too-much-output", "Invalid request",
        f"{images} images x {pngs} PNGs each (heatmap, mask, overlay) could take up to {bound} bytes, over the "
        f"limit of {limit} bytes (VAESERVE_MAX_BODY_BYTES, which answers are held to as well); send fewer images or "
        "ask for fewer of heatmap, mask and overlay",
    )  # fmt: skip


def out_of_range(name: str, value: float, low: float, high: float, setting: str | None = None) -> ServiceError:
    where = f" ({setting})" if setting else ""
    return ServiceError(
        422, "out-of-range", "Invalid request", f"{name} must be between {low} and {high}{where}, got {value}"
    )


def check_range(name: str, value: float, low: float, high: float, setting: str | None = None) -> None:
    """A 422 naming the parameter, and the VAESERVE_ `setting` that sets the bound if one does."""
    if not low <= value <= high:
        raise out_of_range(name, value, low, high, setting)


def as_service_error(exc: Exception) -> ServiceError:
    """Any exception as the answer it gets; unexpected ones become a plain 500."""
    match exc:
        case ServiceError():
            return exc
        case InputTooLargeError():
            return ServiceError(413, "image-too-large", "Image too large", f"{exc} (VAESERVE_MAX_PIXELS_PER_IMAGE)")
        case InvalidImageError():
            return ServiceError(400, "invalid-image", "Invalid image", str(exc))
        case UnsupportedImageError():
            return ServiceError(415, "unsupported-image", "Unsupported image", str(exc))
        case InputError():
            return ServiceError(422, "invalid-input", "Invalid input", str(exc))
        case QueueFullError():
            return overloaded()
        case ModelNotFoundError():
            return ServiceError(404, "model-not-found", "Model not found", str(exc))
        case RequestValidationError():
            first = exc.errors()[0]
            where = " ".join(str(p) for p in first["loc"])
            return ServiceError(422, "invalid-request", "Invalid request", f"{where}: {first['msg']}")
        case ValidationError():
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return ServiceError(422, "invalid-request", "Invalid request", f"body {where}: {first['msg']}")
        case StarletteHTTPException():
            title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
            return ServiceError(exc.status_code, "http", title, str(exc.detail), dict(exc.headers or {}))
    return ServiceError(500, "internal", "Internal server error", "the server failed to answer; see its logs")


def problem_document(error: ServiceError) -> dict[str, Any]:
    return {"type": f"urn:vaeserve:problem:{error.slug}", "title": error.title, "status": error.status,
            "detail": error.detail}  # fmt: skip


def render_problem(error: ServiceError) -> Response:
    """v1 (and everything outside /v2): an RFC 9457 problem document."""
    return JSONResponse(problem_document(error), error.status, error.headers, media_type=PROBLEM_JSON)


class ErrorRenderers:
    """Which protocol renders the errors of which path prefix; problem documents elsewhere.

    Routers render their own errors; this also answers what happens outside any route
    (unknown paths, the middleware's 503 and 504) in the form of the protocol asked for.
    """

    def __init__(self, by_prefix: dict[str, Renderer]) -> None:
        self._by_prefix = by_prefix

    def respond(self, request: Request, exc: Exception) -> Response:
        """The answer to `exc` raised while answering `request`; unexpected ones are logged."""
        error = as_service_error(exc)
        request.state.problem = error.slug  # app/api/middleware.py counts refused inputs by it
        if error.slug == "internal":
            log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return self.for_path(request.url.path)(error)

    def for_path(self, path: str) -> Renderer:
        for prefix, renderer in self._by_prefix.items():
            if path == prefix or path.startswith(prefix + "/"):
                return renderer
        return render_problem


# Starlette answers these classes in its exception middleware, inside ours (app/api/middleware.py);
# any other exception only in its outermost one (ServerErrorMiddleware), which re-raises after
# answering (to log), outside ours: that 500 has no X-Request-ID. install_handlers names them all.
ANSWERED_INSIDE = (ServiceError, InputError, QueueFullError, ModelNotFoundError, RequestValidationError,
                   ValidationError, StarletteHTTPException)  # fmt: skip


def install_handlers(app: FastAPI, renderers: ErrorRenderers) -> None:
    """Answer every exception with a ServiceError, rendered in its path's protocol."""

    async def handle(request: Request, exc: Exception) -> Response:
        return renderers.respond(request, exc)

    for kind in (*ANSWERED_INSIDE, Exception):
        app.add_exception_handler(kind, handle)

"""Per-request plumbing, as one pure ASGI middleware: request ids, the in-flight limit,
the deadline, and one structured access-log line per request.

- `X-Request-ID`: taken from the request when it is a sane token, else a new uuid4; sent
  back on every response and written in every log line of the request.
- In-flight limit: past `max_concurrent_requests` a request gets 503 with Retry-After at
  once, instead of queueing without bound. Health checks are never refused.
- Deadline: a request whose answer has not started after `request_timeout_s` gets 504; its
  work is cancelled. An answer that has started is sent whole: the deadline is disarmed
  when it starts, so it never cuts a response short under a 200. Static files (the
  playground's, the /docs pages' assets) have no deadline: they do no model work, and a
  504 for one module would break the page.
- Client gone: a request whose client disconnects before its answer starts is cancelled
  too (logged with status 499, nginx's "client closed request"), so no work is done for
  nobody. Scoring stops at its next piece (app/serving/registry.py).
- The access log holds method, path, status, duration and request id: never bodies,
  query strings (they may hold keys) or headers.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ErrorRenderers, ServiceError, overloaded
from app.metrics import ServiceMetrics
from app.settings import Settings

access_log = logging.getLogger("app.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
STATIC_PREFIXES = ("/playground", "/static-offline-docs")  # app/api/playground.py, fastapi-offline's default


class RequestMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, metrics: ServiceMetrics, renderers: ErrorRenderers) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.renderers = renderers
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 0
        deadline: asyncio.Timeout | None = None  # armed while the app runs

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                if deadline is not None:
                    _disarm(deadline)
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        path: str = scope["path"]
        limited = path not in OPEN_PATHS
        try:
            if limited and self.in_flight >= self.settings.max_concurrent_requests:
                await self.renderers.for_path(path)(overloaded())(scope, receive, send_with_id)
                return
            self.in_flight += limited
            self.metrics.in_flight.inc()
            try:
                timeout_s = None if path.startswith(STATIC_PREFIXES) else self.settings.request_timeout_s
                async with asyncio.timeout(timeout_s) as deadline:
                    if await _cancelled_on_disconnect(self.app, scope, receive, send_with_id):
                        status = 499
            except TimeoutError:
                deadline = None
                if status == 0:  # nothing sent yet: we can still answer
                    detail = f"the request took longer than {self.settings.request_timeout_s:g} s"
                    timeout = ServiceError(504, "timeout", "Gateway timeout", detail)
                    await self.renderers.for_path(path)(timeout)(scope, receive, send_with_id)
            except Exception:
                status = status or 500  # Starlette's outermost handler answers it with the 500 problem
                raise
            finally:
                self.in_flight -= limited
                self.metrics.in_flight.dec()
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            problem = scope["state"].get("problem") if limited else None  # health answers are no refused input
            self.metrics.observe_request(route, scope["method"], status, seconds, problem)
            access_log.info(
                "%s %s %d",
                scope["method"],
                path,
                status,
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )


def _disarm(deadline: asyncio.Timeout) -> None:
    """The answer starts: from here it is sent whole, the deadline no longer applies.

    A deadline that has already passed, its cancellation held up on the way (a shielded
    await swallowed it), still wins: nothing is sent yet, so the 504 can go out instead."""
    if deadline.expired():
        raise asyncio.CancelledError
    deadline.reschedule(None)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


async def _cancelled_on_disconnect(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> bool:
    """Run the app; cancel it if the client disconnects once the body is read and before the
    answer starts. True when it was cancelled so.

    The app reads the body through `receive`; after that nothing of it reads again, so a
    watcher waits on `receive` for the server's `http.disconnect`. (Once the answer is sent,
    servers report a disconnect at once: it is ignored then.)
    """
    task = asyncio.current_task()
    assert task is not None
    body_read = asyncio.Event()
    started = gone = False

    async def receive_body() -> Message:
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            body_read.set()
        return message

    async def send_started(message: Message) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    async def watch() -> None:
        nonlocal gone
        await body_read.wait()
        if (await receive())["type"] == "http.disconnect" and not started:
            gone = True
            task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        await app(scope, receive_body, send_started)
    except asyncio.CancelledError:
        if not gone or task.uncancel() > 0:  # someone else's cancellation (the deadline, shutdown)
            raise
        return True
    finally:
        watcher.cancel()
    return False

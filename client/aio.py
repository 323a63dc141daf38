"""AsyncVAEClient: the asyncio client, the same methods as VAEClient's, awaited.

    async with AsyncVAEClient("http://127.0.0.1:8000") as vae:
        scores = await vae.score(["a.png", "b.png"])

Each method builds its request with client/calls.py and sends it here, retrying 503s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx2 as httpx

from client import calls
from client.calls import Call, ClientBase, as_method
from client.retry import Attempts

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


def _method(build: Callable[P, Call[T]]) -> Callable[Concatenate[AsyncVAEClient, P], Coroutine[Any, Any, T]]:
    """A client method from an endpoint of client/calls.py: its signature and docstring, sent by _run."""

    async def method(self: AsyncVAEClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(build(*args, **kwargs))

    return as_method(method, build)


class AsyncVAEClient(ClientBase):
    """A vaeserve server's v1 API, for asyncio. Raises VAEServeError for error answers; retries 503s."""

    _http: httpx.AsyncClient

    def _connect(self) -> None:
        self._http = httpx.AsyncClient(**self._options)

    async def __aenter__(self) -> AsyncVAEClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _run(self, call: Call[T]) -> T:
        attempts = Attempts(self.retry)
        while True:
            response, error = None, None
            try:
                response = await self._http.send(call.request(self._http))
            except httpx.TransportError as exc:
                error = exc
            wait = attempts.next_wait(response, error)
            if wait is None:
                return call.finish(response, error, self.base_url)
            log.info("%s %s: retrying in %.2f s", call.method, call.path, wait)
            await asyncio.sleep(wait)

    health = _method(calls.health)
    ready = _method(calls.ready)
    models = _method(calls.models)
    model = _method(calls.model)
    encode = _method(calls.encode)
    decode = _method(calls.decode)
    decode_grid = _method(calls.decode_grid)
    sample = _method(calls.sample)
    sample_grid = _method(calls.sample_grid)
    reconstruct = _method(calls.reconstruct)
    score = _method(calls.score)

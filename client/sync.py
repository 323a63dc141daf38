"""VAEClient: the blocking client.

    with VAEClient("http://127.0.0.1:8000") as vae:
        scores = vae.score(["a.png", "b.png"])
        print(scores.values, scores.is_anomaly)

Each method builds its request with client/calls.py and sends it here, retrying 503s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Concatenate, ParamSpec, TypeVar

import httpx2 as httpx

from client import calls
from client.calls import Call, ClientBase, as_method
from client.retry import Attempts

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


def _method(build: Callable[P, Call[T]]) -> Callable[Concatenate[VAEClient, P], T]:
    """A client method from an endpoint of client/calls.py: its signature and docstring, sent by _run."""

    def method(self: VAEClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(build(*args, **kwargs))

    return as_method(method, build)


class VAEClient(ClientBase):
    """A vaeserve server's v1 API. Raises VAEServeError for error answers; retries 503s."""

    _http: httpx.Client

    def _connect(self) -> None:
        self._http = httpx.Client(**self._options)

    def __enter__(self) -> VAEClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, call: Call[T]) -> T:
        attempts = Attempts(self.retry)
        while True:
            response, error = None, None
            try:
                response = self._http.send(call.request(self._http))
            except httpx.TransportError as exc:
                error = exc
            wait = attempts.next_wait(response, error)
            if wait is None:
                return call.finish(response, error, self.base_url)
            log.info("%s %s: retrying in %.2f s", call.method, call.path, wait)
            time.sleep(wait)

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

"""The hot requests, answered past FastAPI's routing and dependency solving.

A single small image costs the model a fraction of a millisecond, and FastAPI's per-request
machinery (matching the path against every route, solving the dependency tree, validating
each query parameter, three more middleware layers) cost about as much again
(docs/benchmarks.md). For the requests that carry a model server's traffic,

    POST /v1/encode, /v1/score, /v1/reconstruct
    POST /v2/models/{model_name}/infer, /v2/models/{model_name}/versions/{model_version}/infer

`RequestMiddleware` (app/api/middleware.py) asks `HotPaths.find` first, inside its request
id, in-flight limit, deadline, metrics and access log. The handler found checks the API key
(app/api/security.py), looks the model up and calls **the same endpoint function** FastAPI
would route to, with the query parameters parsed here; errors are rendered by the same
renderers as FastAPI's exception handlers (app/errors.py).

Parsing here is strict on purpose: each parser accepts only values that FastAPI (pydantic)
reads the same way, e.g. `seed` as ASCII digits within its range, and raises `DeferToFastAPIError` for
anything else (signs, spaces, out-of-range values, an unknown score name). Such a request,
like any other method or path, is left to FastAPI, which answers it exactly as it always did
(its 422 problem names the parameter). So the two paths cannot disagree: one answers only
what both would answer alike. tests/app/api/test_hot_paths.py sends the same requests both
ways and compares the answers, and checks that every query parameter of these routes is
parsed here. `VAESERVE_HOT_PATHS=false` sends everything through FastAPI.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, get_args

from fastapi.routing import APIRoute
from starlette.datastructures import QueryParams, State
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.security import require_api_key
from app.api.v2_models import resolve
from app.errors import ANSWERED_INSIDE, ErrorRenderers, not_ready
from app.serving.registry import ModelRegistry
from wire.v1 import ScoreName

Parser = Callable[[str], Any]
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})  # pydantic's strings for a bool, any case
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
_FRACTION = re.compile(r"0?\.[0-9]{1,17}")
_V2_PREFIX, _V2_SUFFIX = "/v2/models/", "/infer"


class DeferToFastAPIError(Exception):
    """This request is FastAPI's to answer."""


def flag(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise DeferToFastAPIError


def whole(low: int | None = None, high: int | None = None) -> Parser:
    """ASCII digits (no sign, no spaces, at most 18 of them) within [low, high]."""

    def parse(value: str) -> int:
        if not (0 < len(value) <= 18 and value.isascii() and value.isdigit()):
            raise DeferToFastAPIError
        number = int(value)
        if (low is not None and number < low) or (high is not None and number > high):
            raise DeferToFastAPIError
        return number

    return parse


def fraction(value: str) -> float:
    """A plain decimal strictly between 0 and 1, e.g. 0.01."""
    if not _FRACTION.fullmatch(value) or float(value) == 0.0:
        raise DeferToFastAPIError
    return float(value)


def one_of(*choices: str) -> Parser:
    def parse(value: str) -> str:
        if value not in choices:
            raise DeferToFastAPIError
        return value

    return parse


SEED = whole(0, 2**63 - 1)
# Each hot v1 route's own query parameters (model and version are every v1 route's) and
# how to read them; the endpoints' own defaults apply to those a request leaves out.
V1_QUERIES: dict[str, dict[str, Parser]] = {
    "/v1/encode": {"sample": flag, "seed": SEED},
    "/v1/score": {
        "importance_samples": whole(),
        "seed": SEED,
        "score": one_of(*get_args(ScoreName)),
        "false_positive_rate": fraction,
        "heatmap": flag,
        "mask": flag,
        "overlay": flag,
    },
    "/v1/reconstruct": {"importance_samples": whole(), "seed": SEED, "format": one_of("png", "array"), "heatmap": flag},
}
MODEL_QUERY = ("model", "version")


@dataclass(frozen=True)
class _Route:
    route: APIRoute  # what FastAPI would have matched: metrics label requests with its path
    endpoint: Callable[..., Awaitable[Response]]
    query: dict[str, Parser]


class HotPaths:
    """Finds the hot requests among all, and answers them."""

    def __init__(self, state: State, renderers: ErrorRenderers, routes: Iterable[BaseRoute]) -> None:
        """`state` is the app's (settings, registry, operations); `routes` hold the hot routes (v1's and v2's)."""
        self._state = state
        self._renderers = renderers
        post = {r.path: r for r in routes if isinstance(r, APIRoute) and "POST" in (r.methods or ())}
        self._v1 = {path: _Route(post[path], post[path].endpoint, query) for path, query in V1_QUERIES.items()}
        self._v2 = {
            versioned: _Route(post[path], post[path].endpoint, {})
            for versioned, path in (
                (False, "/v2/models/{model_name}/infer"),
                (True, "/v2/models/{model_name}/versions/{model_version}/infer"),
            )
        }

    def find(self, scope: Scope) -> ASGIApp | None:
        """The handler of this request, or None when FastAPI should answer it."""
        if scope["method"] != "POST" or scope.get("root_path"):
            return None
        path: str = scope["path"]
        try:
            if (hot := self._v1.get(path)) is not None:
                return self._v1_handler(hot, _query(scope, hot.query))
            if path.startswith(_V2_PREFIX) and path.endswith(_V2_SUFFIX):
                return self._v2_handler(path[len(_V2_PREFIX) : -len(_V2_SUFFIX)])
        except DeferToFastAPIError:
            pass
        return None

    def _v1_handler(self, hot: _Route, query: dict[str, Any]) -> ASGIApp:
        name, version = query.pop("model", None), query.pop("version", None)

        async def respond(request: Request) -> Response:
            model = self._registry().get(name, version)
            state = self._state
            return await hot.endpoint(request=request, model=model, settings=state.settings, ops=state.operations,
                                      **query)  # fmt: skip

        return self._handler(hot.route, {}, respond)

    def _v2_handler(self, names: str) -> ASGIApp:
        name, slash, rest = names.partition("/")
        versions, _, version = rest.partition("/")
        if not name or (slash and (versions != "versions" or not version or "/" in version)):
            raise DeferToFastAPIError
        hot = self._v2[bool(slash)]
        path_params = {"model_name": name, **({"model_version": version} if slash else {})}

        async def respond(request: Request) -> Response:
            model = resolve(self._registry(), name, version or None)
            state = self._state
            return await hot.endpoint(request=request, v2=model, settings=state.settings, ops=state.operations)

        return self._handler(hot.route, path_params, respond)

    def _registry(self) -> ModelRegistry:
        registry: ModelRegistry | None = self._state.registry
        if registry is None:
            raise not_ready()
        return registry

    def _handler(
        self, route: APIRoute, path_params: dict[str, str], respond: Callable[[Request], Awaitable[Response]]
    ) -> ASGIApp:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, path_params
            request = Request(scope, receive)
            try:
                await require_api_key(request)
                response = await respond(request)
            except ANSWERED_INSIDE as exc:  # others go on to the outermost handler, as from FastAPI's routes
                response = self._renderers.respond(request, exc)
            await response(scope, receive, send)

        return handle


def _query(scope: Scope, parsers: dict[str, Parser]) -> dict[str, Any]:
    """The request's query parameters that `parsers` (and model, version) know, parsed; the
    last value of a repeated one counts, as in Starlette. Unknown ones are ignored, as FastAPI does."""
    values: dict[str, Any] = {}
    if not scope["query_string"]:
        return values
    for name, value in QueryParams(scope["query_string"]).items():
        if name in MODEL_QUERY:
            values[name] = value
        elif (parse := parsers.get(name)) is not None:
            values[name] = parse(value)
    return values

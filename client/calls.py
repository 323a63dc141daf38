"""Each endpoint as a Call: how to ask (method, path, query, body) and how to read the answer.

The sync and async clients share these; all they add is sending, waiting and retrying.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx2 as httpx
from numpy.typing import ArrayLike
from pydantic import BaseModel

from app.schemas import ScoreName
from client import results as r
from client.bodies import Body, Images, image_body, latents_json
from client.errors import connection_error, error_from_response
from client.retry import DEFAULT_RETRY, RetryPolicy

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_URL = "http://127.0.0.1:8000"
PNG = "image/png"
AuthHeader = Literal["bearer", "x-api-key"]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to make, and how its successful answer becomes a T."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: dict[str, Any] = field(default_factory=dict)
    body: Body = field(default_factory=Body)
    accept: str | None = None

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """A fresh request for each attempt, so a body is never half-consumed by the last one."""
        headers = {"accept": self.accept} if self.accept else {}
        if self.body.content_type:
            headers["content-type"] = self.body.content_type
        return http.build_request(
            self.method,
            self.path,
            params={k: v for k, v in self.params.items() if v is not None},
            content=self.body.content,
            files=self.body.files or None,
            json=self.body.json,
            headers=headers,
        )

    def finish(self, response: httpx.Response | None, error: httpx.TransportError | None, url: str) -> T:
        """The last attempt's outcome: the answer read, or the error raised."""
        if error is not None or response is None:
            raise connection_error(url, error or httpx.TransportError("no answer")) from error
        if not response.is_success:
            raise error_from_response(response)
        return self.read(response)


def as_method(method: F, endpoint: Callable[..., Any]) -> F:
    """`method`, named and documented as `endpoint`, with its signature (self first) for help() and editors."""
    signature = inspect.signature(endpoint)
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__name__ = method.__qualname__ = endpoint.__name__
    method.__doc__ = endpoint.__doc__
    answer = str(signature.return_annotation).removeprefix("Call[").removesuffix("]")  # Call[r.Scores] -> r.Scores
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[this, *signature.parameters.values()], return_annotation=answer
    )
    return method


def _parsed(model: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: model.model_validate_json(response.content)


def _content(response: httpx.Response) -> bytes:
    return response.content


def http_options(base_url: str, api_key: str | None, timeout: float, auth_header: AuthHeader) -> dict[str, Any]:
    """What httpx.Client and httpx.AsyncClient are built with."""
    headers = {"user-agent": f"vaeserve-client/{_version()}"}
    if api_key:
        headers.update({"authorization": f"Bearer {api_key}"} if auth_header == "bearer" else {"x-api-key": api_key})
    return {"base_url": base_url.rstrip("/"), "headers": headers, "timeout": timeout}


def _version() -> str:
    try:
        return version("vaeserve")
    except PackageNotFoundError:  # running from a checkout that is not installed
        return "0"


# The endpoints. Their signatures and docstrings are the clients' methods' (client/sync.py, client/aio.py).


def health() -> Call[r.Health]:
    """GET /healthz: the process answers."""
    return Call("GET", "/healthz", _parsed(r.Health))


def ready() -> Call[r.Readiness]:
    """GET /readyz: every model is loaded and warmed up (a 503 while loading is retried)."""
    return Call("GET", "/readyz", _parsed(r.Readiness))


def models() -> Call[r.ModelList]:
    """GET /v1/models: the loaded models, their metrics and calibration."""
    return Call("GET", "/v1/models", _parsed(r.ModelList))


def model(name: str, version: str | None = None) -> Call[r.ModelDetail]:
    """GET /v1/models/{name}: one model (its highest version unless `version` is given)."""
    return Call("GET", f"/v1/models/{quote(name, safe='')}", _parsed(r.ModelDetail), {"version": version})


def encode(
    images: Images, *, sample: bool = False, seed: int = 0, model: str | None = None, version: str | None = None
) -> Call[r.Encoding]:
    """Images (paths, bytes, or arrays [N, C, H, W]) to the mean and log-variance of q(z|x); z too with sample=True."""
    params = {"sample": sample, "seed": seed, "model": model, "version": version}
    return Call("POST", "/v1/encode", _parsed(r.Encoding), params, image_body(images))


def decode(
    latents: ArrayLike,
    *,
    format: Literal["png", "array"] = "png",
    model: str | None = None,
    version: str | None = None,
) -> Call[r.Decoded]:
    """Latents [N, D] to images: base64 PNGs (`.pngs`) or arrays (`.pixels`)."""
    params = {"model": model, "version": version}
    return Call("POST", "/v1/decode", _parsed(r.Decoded), params, latents_json(latents, format))


def decode_grid(latents: ArrayLike, *, model: str | None = None, version: str | None = None) -> Call[bytes]:
    """Latents [N, D] to one PNG: the image, or a grid of them."""
    params = {"model": model, "version": version}
    return Call("POST", "/v1/decode", _content, params, latents_json(latents, "png"), accept=PNG)


def sample(
    n: int = 16, *, seed: int = 0, temperature: float = 1.0, model: str | None = None, version: str | None = None
) -> Call[r.Samples]:
    """n draws from the prior: PNGs (`.pngs`) and their latents (`.z`)."""
    params = {"n": n, "seed": seed, "temperature": temperature, "format": "json", "model": model, "version": version}
    return Call("GET", "/v1/samples", _parsed(r.Samples), params)


def sample_grid(
    n: int = 16, *, seed: int = 0, temperature: float = 1.0, model: str | None = None, version: str | None = None
) -> Call[bytes]:
    """n draws from the prior as one PNG grid; the same seed gives the same bytes."""
    params = {"n": n, "seed": seed, "temperature": temperature, "format": "png", "model": model, "version": version}
    return Call("GET", "/v1/samples", _content, params, accept=PNG)


def reconstruct(
    images: Images,
    *,
    importance_samples: int | None = None,
    seed: int = 0,
    format: Literal["png", "array"] = "png",
    model: str | None = None,
    version: str | None = None,
) -> Call[r.Reconstruction]:
    """Reconstructions from the posterior mean (`.pngs` or `.pixels`), with their scores."""
    params = {"importance_samples": importance_samples, "seed": seed, "format": format, "model": model,
              "version": version}  # fmt: skip
    return Call("POST", "/v1/reconstruct", _parsed(r.Reconstruction), params, image_body(images))


def score(
    images: Images,
    *,
    score: ScoreName | None = None,
    false_positive_rate: float | None = None,
    importance_samples: int | None = None,
    seed: int = 0,
    model: str | None = None,
    version: str | None = None,
) -> Call[r.Scores]:
    """Anomaly scores: all scores, the decision score (`.values`), its threshold, p-values and decisions."""
    params = {"score": score, "false_positive_rate": false_positive_rate, "importance_samples": importance_samples,
              "seed": seed, "model": model, "version": version}  # fmt: skip
    return Call("POST", "/v1/score", _parsed(r.Scores), params, image_body(images))


class ClientBase:
    """What both clients are configured with."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        auth_header: AuthHeader = "bearer",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry
        self._options = http_options(self.base_url, api_key, timeout, auth_header)
        self._connect()

    def _connect(self) -> None:
        """Open the HTTP connection pool (an httpx.Client or httpx.AsyncClient)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

"""Each endpoint as a Call: how to ask (method, path, query, body) and how to read the answer.

The sync and async clients (client/sync.py, client/aio.py) build their requests here and
parse the answers with these readers; all they add is sending, waiting and retrying. The
parameters mean what the clients' methods document.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote, urlsplit

import httpx2 as httpx
from numpy.typing import ArrayLike
from pydantic import BaseModel

from client import results as r
from client.bodies import Body, Images, Upload, codes_body, latents_json
from client.errors import connection_error, error_from_response
from client.retry import DEFAULT_RETRY, RetryPolicy
from wire.v1 import PathMethod, ScoreName

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
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

    def finish(
        self, response: httpx.Response | None, error: httpx.TransportError | None, url: str, timeout: float
    ) -> T:
        """The last attempt's outcome: the answer read, or the error raised."""
        if error is not None or response is None:
            raise connection_error(url, error or httpx.TransportError("no answer"), timeout) from error
        if not response.is_success:
            raise error_from_response(response)
        return self.read(response)


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


# The endpoints, in the order of the clients' methods.


def health() -> Call[r.Health]:
    """GET /healthz."""
    return Call("GET", "/healthz", _parsed(r.Health))


def ready() -> Call[r.Readiness]:
    """GET /readyz."""
    return Call("GET", "/readyz", _parsed(r.Readiness))


def models() -> Call[r.ModelList]:
    """GET /v1/models."""
    return Call("GET", "/v1/models", _parsed(r.ModelList))


def limits() -> Call[r.Limits]:
    """GET /v1/limits."""
    return Call("GET", "/v1/limits", _parsed(r.Limits))


def model(name: str, version: str | None = None) -> Call[r.ModelDetail]:
    """GET /v1/models/{name}."""
    return Call("GET", f"/v1/models/{quote(name, safe='')}", _parsed(r.ModelDetail), {"version": version})


def calibrated_importance_samples(name: str | None, version: str | None = None) -> Call[int | None]:
    """The K a score request without one gets from a model's calibration (None: not calibrated):
    GET /v1/models/{name}, or GET /v1/models for the server's default model."""
    if name is not None:
        detail = model(name, version)
        return Call(detail.method, detail.path, lambda answer: _k(detail.read(answer)), detail.params)

    def read(answer: httpx.Response) -> int | None:
        listed = r.ModelList.model_validate_json(answer.content).models
        return next((_k(summary) for summary in listed if summary.default), None)

    return Call("GET", "/v1/models", read)


def _k(summary: r.ModelSummary) -> int | None:
    return summary.calibration.importance_samples if summary.calibration is not None else None


def encode(
    images: Images | Upload,
    *,
    sample: bool = False,
    seed: int = 0,
    model: str | None = None,
    version: str | None = None,
) -> Call[r.Encoding]:
    """POST /v1/encode."""
    params = {"sample": sample, "seed": seed, "model": model, "version": version}
    return Call("POST", "/v1/encode", _parsed(r.Encoding), params, _upload(images).body())


def decode(
    latents: ArrayLike,
    *,
    format: Literal["png", "array"] = "png",
    model: str | None = None,
    version: str | None = None,
) -> Call[r.Decoded]:
    """POST /v1/decode, JSON."""
    params = {"model": model, "version": version}
    return Call("POST", "/v1/decode", _parsed(r.Decoded), params, latents_json(latents, format))


def decode_grid(latents: ArrayLike, *, model: str | None = None, version: str | None = None) -> Call[bytes]:
    """POST /v1/decode, a PNG."""
    params = {"model": model, "version": version}
    return Call("POST", "/v1/decode", _content, params, latents_json(latents, "png"), accept=PNG)


def sample(
    n: int = 16, *, seed: int = 0, temperature: float = 1.0, model: str | None = None, version: str | None = None
) -> Call[r.Samples]:
    """GET /v1/samples, JSON."""
    params = {"n": n, "seed": seed, "temperature": temperature, "format": "json", "model": model, "version": version}
    return Call("GET", "/v1/samples", _parsed(r.Samples), params)


def sample_grid(
    n: int = 16, *, seed: int = 0, temperature: float = 1.0, model: str | None = None, version: str | None = None
) -> Call[bytes]:
    """GET /v1/samples, a PNG grid."""
    params = {"n": n, "seed": seed, "temperature": temperature, "format": "png", "model": model, "version": version}
    return Call("GET", "/v1/samples", _content, params, accept=PNG)


def reconstruct(
    images: Images | Upload,
    *,
    importance_samples: int | None = None,
    seed: int = 0,
    format: Literal["png", "array"] = "png",
    model: str | None = None,
    version: str | None = None,
) -> Call[r.Reconstruction]:
    """POST /v1/reconstruct."""
    params = {"importance_samples": importance_samples, "seed": seed, "format": format, "model": model,
              "version": version}  # fmt: skip
    return Call("POST", "/v1/reconstruct", _parsed(r.Reconstruction), params, _upload(images).body())


def score(
    images: Images | Upload,
    *,
    score: ScoreName | None = None,
    false_positive_rate: float | None = None,
    importance_samples: int | None = None,
    seed: int = 0,
    heatmap: bool = False,
    mask: bool = False,
    overlay: bool = False,
    model: str | None = None,
    version: str | None = None,
) -> Call[r.Scores]:
    """POST /v1/score; heatmap, mask and overlay ask for those PNGs per image."""
    params = {"score": score, "false_positive_rate": false_positive_rate, "importance_samples": importance_samples,
              "seed": seed, "model": model, "version": version,
              **{name: "true" for name, wanted in (("heatmap", heatmap), ("mask", mask), ("overlay", overlay))
                 if wanted}}  # fmt: skip
    return Call("POST", "/v1/score", _parsed(r.Scores), params, _upload(images).body())


def _upload(images: Images | Upload) -> Upload:
    return images if isinstance(images, Upload) else Upload.of(images)


def interpolate(
    images: Images | None = None,
    *,
    latents: ArrayLike | None = None,
    steps: int = 8,
    method: PathMethod = "slerp",
    model: str | None = None,
    version: str | None = None,
) -> Call[r.Interpolation]:
    """POST /v1/interpolate, JSON."""
    params = {"steps": steps, "method": method, "format": "json", "model": model, "version": version}
    return Call("POST", "/v1/interpolate", _parsed(r.Interpolation), params, codes_body(images, latents))


def interpolate_strip(
    images: Images | None = None,
    *,
    latents: ArrayLike | None = None,
    steps: int = 8,
    method: PathMethod = "slerp",
    model: str | None = None,
    version: str | None = None,
) -> Call[bytes]:
    """POST /v1/interpolate, a PNG strip."""
    return _png(interpolate(images, latents=latents, steps=steps, method=method, model=model, version=version))


def traverse(
    image: Images | None = None,
    *,
    latent: ArrayLike | None = None,
    dimensions: Sequence[int] | None = None,
    low: float = -3.0,
    high: float = 3.0,
    steps: int = 7,
    model: str | None = None,
    version: str | None = None,
) -> Call[r.Traversal]:
    """POST /v1/traverse, JSON."""
    params = {"dimensions": None if dimensions is None else list(dimensions), "low": low, "high": high,
              "steps": steps, "format": "json", "model": model, "version": version}  # fmt: skip
    return Call("POST", "/v1/traverse", _parsed(r.Traversal), params, codes_body(image, latent))


def traverse_grid(
    image: Images | None = None,
    *,
    latent: ArrayLike | None = None,
    dimensions: Sequence[int] | None = None,
    low: float = -3.0,
    high: float = 3.0,
    steps: int = 7,
    model: str | None = None,
    version: str | None = None,
) -> Call[bytes]:
    """POST /v1/traverse, a PNG grid."""
    return _png(traverse(image, latent=latent, dimensions=dimensions, low=low, high=high, steps=steps, model=model,
                         version=version))  # fmt: skip


def _png(call: Call[Any]) -> Call[bytes]:
    """The same request, answered with one PNG (format=png) instead of JSON."""
    return Call(call.method, call.path, _content, {**call.params, "format": "png"}, call.body, accept=PNG)


class ClientBase:
    """What both clients are configured with."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        auth_header: AuthHeader = "bearer",
    ) -> None:
        """`base_url` defaults to $VAESERVE_URL, else http://127.0.0.1:8000; `api_key` to $VAESERVE_API_KEY."""
        self.base_url = (base_url or os.environ.get("VAESERVE_URL") or DEFAULT_URL).rstrip("/")
        api_key = api_key if api_key is not None else os.environ.get("VAESERVE_API_KEY") or None
        _check_url(self.base_url)
        self.retry = retry
        self.timeout = timeout
        self._options = http_options(self.base_url, api_key, timeout, auth_header)
        self._limits: r.Limits | None = None  # GET /v1/limits, asked once (see `budget`); None on older servers
        self._limits_asked = False
        self._calibrated_k: dict[tuple[str | None, str | None], int | None] = {}  # per (model, version)
        self._connect()

    def _connect(self) -> None:
        """Open the HTTP connection pool (an httpx.Client or httpx.AsyncClient)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    def _planned_k(self, importance_samples: int | None, calibrated: int | None) -> int | None:
        """K to plan a scored request by: as asked, else the model's calibrated K, else the server's default."""
        if importance_samples is not None or self._limits is None:
            return importance_samples
        return calibrated or self._limits.default_importance_samples


def _check_url(url: str) -> None:
    """Refuse a server URL httpx would fail on later with a misleading transport error."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        hint = f"; did you mean http://{url}?" if "://" not in url else ""
        raise ValueError(f"the server URL {url!r} must start with http:// or https:// and name a host{hint}")

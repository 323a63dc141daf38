"""AsyncVAEClient: the asyncio client, the same methods as VAEClient's, awaited.

    async with AsyncVAEClient("http://127.0.0.1:8000") as vae:
        scores = await vae.score(["a.png", "b.png"])

Each method builds its request with client/calls.py and sends it here, retrying 503s;
the parameters are VAEClient's (client/sync.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from functools import partial
from types import TracebackType
from typing import Literal, TypeVar

import httpx2 as httpx
from numpy.typing import ArrayLike

from client import calls
from client import results as r
from client.batching import Batched, Budget, join, k_matters
from client.batching import budget as batching_budget
from client.bodies import Images, Upload
from client.calls import Call, ClientBase
from client.errors import VAEServeError
from client.retry import Attempts
from wire.v1 import PathMethod, ScoreName

log = logging.getLogger(__name__)
T = TypeVar("T")
A = TypeVar("A", bound=Batched)


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
                return call.finish(response, error, self.base_url, self.timeout)
            log.info("%s %s: retrying in %.2f s", call.method, call.path, wait)
            await asyncio.sleep(wait)

    async def health(self) -> r.Health:
        """GET /healthz: the process answers."""
        return await self._run(calls.health())

    async def ready(self) -> r.Readiness:
        """GET /readyz: every model is loaded and warmed up (a 503 while loading is retried)."""
        return await self._run(calls.ready())

    async def models(self) -> r.ModelList:
        """GET /v1/models: the loaded models, their metrics and calibration."""
        return await self._run(calls.models())

    async def limits(self) -> r.Limits:
        """GET /v1/limits: what one request may ask (body bytes, images, pixels, samples, K)."""
        return await self._run(calls.limits())

    async def model(self, name: str, version: str | None = None) -> r.ModelDetail:
        """GET /v1/models/{name}: one model (its highest version unless `version` is given)."""
        return await self._run(calls.model(name, version))

    async def budget(
        self, *, scored: bool = False, importance_samples: int | None = None, model: str | None = None,
        version: str | None = None, max_images: int | None = None,
    ) -> Budget:  # fmt: skip
        """What one request may carry under the server's limits (GET /v1/limits, asked once per client).

        For a `scored` request (score, reconstruct) the images per request also keep images x K
        within max_total_importance_samples; without `importance_samples`, K is the model's
        calibrated one (asked once per model). `max_images` is a cap of the caller's own.
        A server without /v1/limits gives no budget beyond `max_images`.
        """
        if not self._limits_asked:
            try:
                self._limits = await self._run(calls.limits())
            except VAEServeError as exc:
                if exc.status != 404:  # a server older than /v1/limits: send as asked
                    raise
            self._limits_asked = True
        key = (model, version)
        if scored and importance_samples is None and k_matters(self._limits) and key not in self._calibrated_k:
            with contextlib.suppress(VAEServeError):  # an unknown model: the request itself will say so
                self._calibrated_k[key] = await self._run(calls.calibrated_importance_samples(model, version))
        planned = scored and k_matters(self._limits)  # else every K the server takes fits any request
        k = self._planned_k(importance_samples, self._calibrated_k.get(key)) if planned else None
        return batching_budget(self._limits, k, max_images)

    async def _run_split(self, uploads: Sequence[Upload], ask: Callable[[Upload], Call[A]]) -> A:
        """One request per upload, in order; their answers joined as one."""
        return join([await self._run(ask(upload)) for upload in uploads])

    async def encode(
        self, images: Images, *, sample: bool = False, seed: int = 0, model: str | None = None,
        version: str | None = None,
    ) -> r.Encoding:  # fmt: skip
        """Images to the mean and log-variance of q(z|x) (`.mean`, `.log_var`); one draw `.z` with sample=True.
        Any number of images: split into requests within the server's limits (`budget`), results in order."""
        uploads = Upload.of(images).split(await self.budget())
        ask = partial(calls.encode, sample=sample, seed=seed, model=model, version=version)
        return await self._run_split(uploads, ask)

    async def decode(
        self, latents: ArrayLike, *, format: Literal["png", "array"] = "png", model: str | None = None,
        version: str | None = None,
    ) -> r.Decoded:  # fmt: skip
        """Latents [N, D] to images: base64 PNGs (`.pngs`) or arrays (`.pixels`)."""
        return await self._run(calls.decode(latents, format=format, model=model, version=version))

    async def decode_grid(self, latents: ArrayLike, *, model: str | None = None, version: str | None = None) -> bytes:
        """Latents [N, D] to one PNG: the image, or a grid of them."""
        return await self._run(calls.decode_grid(latents, model=model, version=version))

    async def sample(
        self, n: int = 16, *, seed: int = 0, temperature: float = 1.0, model: str | None = None,
        version: str | None = None,
    ) -> r.Samples:  # fmt: skip
        """n draws from the prior: PNGs (`.pngs`) and their latents (`.z`)."""
        return await self._run(calls.sample(n, seed=seed, temperature=temperature, model=model, version=version))

    async def sample_grid(
        self, n: int = 16, *, seed: int = 0, temperature: float = 1.0, model: str | None = None,
        version: str | None = None,
    ) -> bytes:  # fmt: skip
        """n draws from the prior as one PNG grid; the same seed gives the same bytes."""
        return await self._run(calls.sample_grid(n, seed=seed, temperature=temperature, model=model, version=version))

    async def reconstruct(
        self, images: Images, *, importance_samples: int | None = None, seed: int = 0,
        format: Literal["png", "array"] = "png", model: str | None = None, version: str | None = None,
    ) -> r.Reconstruction:  # fmt: skip
        """Reconstructions from the posterior mean (`.pngs` or `.pixels`), with their scores; split like `encode`."""
        budget = await self.budget(scored=True, importance_samples=importance_samples, model=model, version=version)
        ask = partial(calls.reconstruct, importance_samples=importance_samples, seed=seed, format=format, model=model,
                      version=version)  # fmt: skip
        return await self._run_split(Upload.of(images).split(budget), ask)

    async def score(
        self, images: Images, *, score: ScoreName | None = None, false_positive_rate: float | None = None,
        importance_samples: int | None = None, seed: int = 0, heatmap: bool = False, mask: bool = False,
        overlay: bool = False, model: str | None = None, version: str | None = None,
    ) -> r.Scores:  # fmt: skip
        """Anomaly scores: all scores, the decision score (`.values`), its threshold, p-values and decisions;
        with heatmap, mask, overlay also `.heatmaps`, `.masks` (N, H, W) and `.overlays`. Split like
        `encode`, and so that images x K stays within the server's max_total_importance_samples."""
        budget = await self.budget(scored=True, importance_samples=importance_samples, model=model, version=version)
        ask = partial(calls.score, score=score, false_positive_rate=false_positive_rate,
                      importance_samples=importance_samples, seed=seed, heatmap=heatmap, mask=mask,
                      overlay=overlay, model=model, version=version)  # fmt: skip
        return await self._run_split(Upload.of(images).split(budget), ask)

    async def interpolate(
        self, images: Images | None = None, *, latents: ArrayLike | None = None, steps: int = 8,
        method: PathMethod = "slerp", model: str | None = None, version: str | None = None,
    ) -> r.Interpolation:  # fmt: skip
        """`steps` images on the path between two images' posterior means (or two `latents`): `.pngs`, `.z`."""
        call = calls.interpolate(images, latents=latents, steps=steps, method=method, model=model, version=version)
        return await self._run(call)

    async def interpolate_strip(
        self, images: Images | None = None, *, latents: ArrayLike | None = None, steps: int = 8,
        method: PathMethod = "slerp", model: str | None = None, version: str | None = None,
    ) -> bytes:  # fmt: skip
        """The same path as one PNG strip, start on the left."""
        call = calls.interpolate_strip(images, latents=latents, steps=steps, method=method, model=model,
                                       version=version)  # fmt: skip
        return await self._run(call)

    async def traverse(
        self, image: Images | None = None, *, latent: ArrayLike | None = None, dimensions: Sequence[int] | None = None,
        low: float = -3.0, high: float = 3.0, steps: int = 7, model: str | None = None, version: str | None = None,
    ) -> r.Traversal:  # fmt: skip
        """Sweep `dimensions` (the most active when None) of one image's posterior mean (or `latent`) from
        `low` to `high` prior standard deviations: per dimension `.pngs[i]`, and `.z` (dimensions, steps, D)."""
        call = calls.traverse(image, latent=latent, dimensions=dimensions, low=low, high=high, steps=steps,
                              model=model, version=version)  # fmt: skip
        return await self._run(call)

    async def traverse_grid(
        self, image: Images | None = None, *, latent: ArrayLike | None = None, dimensions: Sequence[int] | None = None,
        low: float = -3.0, high: float = 3.0, steps: int = 7, model: str | None = None, version: str | None = None,
    ) -> bytes:  # fmt: skip
        """The same sweep as one PNG grid: a row per dimension, a column per value."""
        call = calls.traverse_grid(image, latent=latent, dimensions=dimensions, low=low, high=high, steps=steps,
                                   model=model, version=version)  # fmt: skip
        return await self._run(call)

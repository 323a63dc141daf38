"""The models a service holds: every bundle of a repository, loaded and warmed up once.

Start-up fails, naming the file, if any bundle is broken: a server that answers with a
model it could not verify is worse than one that does not start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray
from starlette.concurrency import run_in_threadpool

from app import tracing
from app.metrics import ServiceMetrics
from app.monitoring.monitor import ModelMonitor, MonitorConfig
from app.serving.batching import BatchFn, MicroBatcher, Outputs, PassThrough
from app.settings import SHIPPED_DEFAULT, SHIPPED_REPOSITORY, Settings
from model.bundle import Manifest, list_repository, load_bundle
from model.errors import BundleError
from model.golden import verify_golden
from model.runtime import RuntimeOptions, ScoreBatch, VAERuntime, join_parts, score_pieces

log = logging.getLogger(__name__)


class ModelNotFoundError(LookupError):
    def __init__(self, name: str, version: str | None) -> None:
        super().__init__(f"no model named {name!r}" + (f" with version {version!r}" if version else ""))
        self.name = name
        self.version = version


class LoadedModel:
    """One bundle's runtime, and its three calls (encode, decode, score) through an executor.

    With batching on, each call goes through a micro-batcher that merges concurrent calls
    into one ONNX Runtime call; with it off, through a pass-through that runs each call alone
    in a worker thread (app/serving/batching.py). Outputs cross the executor by name.
    """

    def __init__(self, runtime: VAERuntime) -> None:
        self.runtime = runtime
        self.executors: dict[str, MicroBatcher | PassThrough] = {
            op: PassThrough(fn, self._span_attributes(op)) for op, fn in self._functions().items()
        }
        self.monitor: ModelMonitor | None = None  # what the operations layer reports to; None: monitoring off

    @property
    def manifest(self) -> Manifest:
        return self.runtime.manifest

    @property
    def key(self) -> str:
        return f"{self.manifest.name}:{self.manifest.version}"

    def _span_attributes(self, operation: str) -> dict[str, str]:
        return {tracing.MODEL: self.key, tracing.OPERATION: operation}

    def _functions(self) -> dict[str, BatchFn]:
        rt = self.runtime

        def encode(_: Hashable, images: NDArray[np.float32]) -> Outputs:
            mean, log_var = rt.encode(images)
            return {"mean": mean, "log_var": log_var}

        def decode(_: Hashable, z: NDArray[np.float32]) -> Outputs:
            return {"images": rt.decode(z)}

        def score(key: Hashable, images: NDArray[np.float32]) -> Outputs:
            seed, start, stop = cast(tuple[int, int, int], key)
            return rt.score_part(images, seed, start, stop)

        return {"encode": encode, "decode": decode, "score": score}

    def start_batching(self, settings: Settings, metrics: ServiceMetrics) -> None:
        batchers = {
            op: MicroBatcher(
                f"{self.key}/{op}",
                fn,
                settings.batch_max_size,
                settings.batch_max_delay_us,
                settings.batch_queue_size,
                on_batch=metrics.batch_observer(self.key, op),
                attributes=self._span_attributes(op),
            )
            for op, fn in self._functions().items()
        }
        for batcher in batchers.values():
            batcher.start()
        self.executors = dict(batchers)

    async def stop_batching(self) -> None:
        await asyncio.gather(*(executor.stop() for executor in self.executors.values()))

    async def encode(self, images: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """(N, C, H, W) in [0, 1] -> mean, log_var (N, D) of q(z|x)."""
        out = await self.executors["encode"].submit(None, images)
        return out["mean"], out["log_var"]  # type: ignore[return-value]

    async def decode(self, z: NDArray[np.float32]) -> NDArray[np.float32]:
        """(N, D) latents -> (N, C, H, W) images in [0, 1]; refuses latents of the wrong shape first."""
        out = await self.executors["decode"].submit(None, self.runtime.check_latents(z))
        return out["images"]  # type: ignore[return-value]

    async def score(self, images: NDArray[np.float32], importance_samples: int, seed: int) -> ScoreBatch:
        """Every score of every image, with K = importance_samples draws from `seed`.

        The work goes to the executor in pieces (`score_pieces`: SAMPLE_CHUNK samples of at
        most PIECE_DECODES // SAMPLE_CHUNK images, model/runtime.py), one at a time: a request
        has at most one piece queued, so the pieces of every request in flight take turns
        (round robin) and a light request never waits for all of a heavy one's, however many
        images or samples it asks for. When the request is cancelled (its deadline passed,
        its client left), it stops waiting at once, no further piece is queued, and a queued
        one is skipped: at most the piece already running is finished. Pieces with equal
        (seed, samples) from concurrent requests are still batched together.
        """
        parts = []
        for start, stop, images_per_piece in score_pieces(importance_samples):
            pieces = []
            for first in range(0, len(images), images_per_piece):
                rows = images[first : first + images_per_piece]
                pieces.append(await self.executors["score"].submit((seed, start, stop), rows))
            parts.append({name: np.concatenate([piece[name] for piece in pieces]) for name in pieces[0]})
        return join_parts(self.manifest, parts, importance_samples)


async def reload_registry(state: Any, settings: Settings, lock: asyncio.Lock) -> ModelRegistry:
    """Load the repository anew beside the serving registry, then swap it in.

    A bad bundle raises BundleError before anything changes, so the old models keep
    serving. Requests already holding the old registry finish on it; its batchers drain
    before they stop.
    """
    async with lock:
        new = await run_in_threadpool(ModelRegistry.load, settings)
        await run_in_threadpool(new.warm_up)
        new.start_batching(settings, state.metrics)
        old: ModelRegistry | None = state.registry
        new.start_monitoring(settings, old)
        state.registry = new
    if old is not None:
        await old.stop_batching()
    log.info("reloaded: %s", ", ".join(m.key for m in new.all()))
    return new


class ModelRegistry:
    """name -> version -> LoadedModel, plus which model answers requests that name none."""

    def __init__(self, models: list[LoadedModel], default: str | None) -> None:
        self._models: dict[str, dict[str, LoadedModel]] = {}
        for m in models:
            self._models.setdefault(m.manifest.name, {})[m.manifest.version] = m
        name, _, version = (default or min(self._models)).partition(":")
        self.default = self.get(name, version or None)

    @classmethod
    def load(cls, settings: Settings) -> ModelRegistry:
        """Load and verify every bundle in the repository; raise BundleError on the first bad one."""
        options = RuntimeOptions(
            intra_op_threads=settings.ort_intra_op_threads,
            inter_op_threads=settings.ort_inter_op_threads,
            graph_optimization=settings.ort_graph_optimization,
            providers=tuple(settings.ort_providers),
            memory_arena=settings.ort_memory_arena,
        )
        root = settings.model_repository
        single = (root / "manifest.json").exists()  # one bundle given as the repository
        paths = [root] if single else list(list_repository(root).values())
        models: dict[str, LoadedModel] = {}
        for path in paths:
            model = LoadedModel(VAERuntime(load_bundle(path), options))
            verify_golden(model.runtime)  # the bundle's golden set, recomputed here: BundleError on a mismatch
            if model.key in models:
                raise BundleError(
                    str(path), f"{model.key} is already served from {models[model.key].runtime.bundle.path}"
                )
            if not single and (path.parent.name, path.name) != (model.manifest.name, model.manifest.version):
                log.warning("%s is served as %s, the name and version in its manifest", path, model.key)
            models[model.key] = model
            log.info("loaded %s from %s", model.key, path)
        if not models:
            raise BundleError(str(root), "holds no bundles (<name>/<version>/manifest.json)")
        try:
            shipped = settings.model_repository == SHIPPED_REPOSITORY
            return cls(list(models.values()), settings.default_model or (SHIPPED_DEFAULT if shipped else None))
        except ModelNotFoundError as exc:
            raise BundleError(str(root), f"default model: {exc}") from None

    def get(self, name: str | None = None, version: str | None = None) -> LoadedModel:
        """The named model (its highest version unless one is given), or the default."""
        if name is None:
            if version is not None:
                raise ModelNotFoundError(self.default.manifest.name, version)
            return self.default
        versions = self._models.get(name)
        if not versions:
            raise ModelNotFoundError(name, version)
        if version is None:
            return versions[max(versions, key=int)]
        if version not in versions:
            raise ModelNotFoundError(name, version)
        return versions[version]

    def all(self) -> list[LoadedModel]:
        return [
            m for name in sorted(self._models) for _, m in sorted(self._models[name].items(), key=lambda kv: int(kv[0]))
        ]

    def start_batching(self, settings: Settings, metrics: ServiceMetrics) -> None:
        if settings.batching:
            for m in self.all():
                m.start_batching(settings, metrics)

    async def stop_batching(self) -> None:
        await asyncio.gather(*(m.stop_batching() for m in self.all()))

    def start_monitoring(self, settings: Settings, previous: ModelRegistry | None = None) -> None:
        """Give each model a monitor (app/monitoring/), unless monitoring is off.

        On a reload (`previous`), a model whose bundle is unchanged (an equal manifest: the same
        files, calibration and training latents) keeps its monitor, so its windows, counts and
        last drift report go on; a new or changed bundle starts afresh, since an old encoder's
        latents and an old calibration's decisions say nothing of the new one's.
        """
        if not settings.monitoring:
            return
        config = MonitorConfig(settings.anomaly_rate_window, settings.drift_window if settings.drift_interval_s else 0)
        kept = {m.key: m for m in previous.all()} if previous is not None else {}
        for m in self.all():
            old = kept.get(m.key)
            if old is not None and old.monitor is not None and old.manifest == m.manifest:
                m.monitor = old.monitor
            else:
                m.monitor = ModelMonitor(m.manifest, config)

    def monitors(self) -> list[ModelMonitor]:
        return [m.monitor for m in self.all() if m.monitor is not None]

    def warm_up(self) -> None:
        """Run every graph once, so the first request does not pay for lazy initialisation."""
        for m in self.all():
            spec = m.manifest.input
            images = np.zeros((1, spec.channels, spec.height, spec.width), np.float32)
            m.runtime.score(images, importance_samples=2, seed=0)

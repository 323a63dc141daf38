"""The FastAPI application: wiring only. Models load in the lifespan, never at import.

uvicorn app.main:create_app --factory          # or: python -m app
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline

from app import tracing
from app.api import admin, health, latent_space, metrics, monitoring, playground, v1, v2
from app.api.hot_paths import HotPaths
from app.api.middleware import RequestMiddleware
from app.api.responses import add_security, problem_validation_errors
from app.api.security import require_api_key
from app.errors import ErrorRenderers, install_handlers
from app.metrics import ServiceMetrics
from app.monitoring.schedule import DriftSchedule
from app.serving.operations import Operations
from app.serving.registry import ModelRegistry, reload_registry
from app.settings import Settings
from model.errors import BundleError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("app")


def _version() -> str:
    try:
        return version("vaeserve")
    except PackageNotFoundError:
        return "0+unknown"


def create_app(
    settings: Settings | None = None,
    registry: ModelRegistry | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """Build the app; its lifespan loads (unless given `registry`), verifies and warms up every model.

    Requests are traced with `tracer_provider`, else as the OTEL_* variables say (app/tracing.py: off by default).
    """
    settings = settings or Settings()
    preloaded = registry

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            registry = preloaded if preloaded is not None else await run_in_threadpool(ModelRegistry.load, settings)
        except BundleError as exc:
            log.error("cannot serve: %s", exc)
            raise
        await run_in_threadpool(registry.warm_up)
        registry.start_batching(settings, app.state.metrics)
        registry.start_monitoring(settings)
        app.state.registry = registry
        drift = _drift_schedule(app, settings)
        _reload_on_sighup(app, settings)
        log.info("ready: %s (default %s)", ", ".join(m.key for m in registry.all()), registry.default.key)
        yield
        serving, app.state.registry = app.state.registry, None
        if drift is not None:
            await run_in_threadpool(drift.stop)
        await serving.stop_batching()

    # /docs and /redoc with Swagger UI and ReDoc served from the fastapi-offline package, not
    # from a CDN: a model server often runs where the internet is not.
    app = FastAPIOffline(
        title="vaeserve",
        version=_version(),
        summary="A variational autoencoder over HTTP: encode, decode, sample, reconstruct, score.",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry (0.165+) off: requests are traced by app/tracing.py and
        # measured by app/metrics.py; left on, it looks up the global providers on every request
        # (an os.environ read, ~6 µs) and, with tracing on, would add a second server span.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.registry = None
    app.state.operations = Operations(settings)
    app.state.reload_lock = asyncio.Lock()
    app.state.metrics = ServiceMetrics(lambda: app.state.registry)
    renderers = ErrorRenderers({"/v2": v2.render_error})
    install_handlers(app, renderers)
    key = [Depends(require_api_key)]
    routers = [
        (health.router, True),
        (metrics.router, not settings.metrics_need_key),
        (v1.router, False),
        (latent_space.router, False),
        (monitoring.router, False),
        (v2.health_router, True),
        (v2.router, False),
        (admin.router, False),
    ]
    for router, is_open in routers:
        app.include_router(router, dependencies=[] if is_open else key)
    hot_paths = HotPaths(app.state, renderers, [*v1.router.routes, *v2.router.routes]) if settings.hot_paths else None
    app.add_middleware(
        RequestMiddleware, settings=settings, metrics=app.state.metrics, renderers=renderers, hot_paths=hot_paths
    )
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"])  # fmt: skip
    keyed = {(r.path, m.lower()) for router, is_open in routers if not is_open
             for r in router.routes if isinstance(r, APIRoute) for m in r.methods or ()}  # fmt: skip
    _finish_openapi(app, keyed if settings.api_keys else set())
    if settings.playground:
        playground.mount(app)  # static files only: the page asks the API above, with the user's key
    provider = tracer_provider or tracing.provider_from_environment()
    if provider is not None:
        tracing.install(app, provider)
    return app


def _finish_openapi(app: FastAPI, keyed: set[tuple[str, str]]) -> None:
    """FastAPI's schema, with its validation 422 in our problem form and the key schemes where keys are asked."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_security(problem_validation_errors(generate()), keyed)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _drift_schedule(app: FastAPI, settings: Settings) -> DriftSchedule | None:
    """Drift reports of whatever models serve at each tick, unless monitoring or drift is off."""
    if not settings.monitoring or settings.drift_interval_s == 0:
        return None
    schedule = DriftSchedule(app.state.metrics.monitors, settings.drift_interval_s)
    schedule.start()
    return schedule


def _reload_on_sighup(app: FastAPI, settings: Settings) -> None:
    """SIGHUP reloads the repository, like the admin endpoint (main thread of a server only)."""

    def reload() -> None:
        task = asyncio.ensure_future(reload_registry(app.state, settings, app.state.reload_lock))
        task.add_done_callback(_log_reload_failure)

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reload)
    except (RuntimeError, ValueError):  # not the main thread (e.g. TestClient): no signals
        log.debug("SIGHUP reload not installed outside the main thread")


def _log_reload_failure(task: asyncio.Task[ModelRegistry]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("reload refused, the old models keep serving: %s", task.exception())

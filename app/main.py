"""The FastAPI application: wiring only. Models load in the lifespan, never at import.

uvicorn app.main:create_app --factory          # or: python -m app
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute

from app.errors import install_handlers
from app.registry import ModelRegistry
from app.routes import health, v1
from app.settings import Settings
from model.errors import BundleError

log = logging.getLogger("app")


def _version() -> str:
    try:
        return version("vaeserve")
    except PackageNotFoundError:
        return "0+unknown"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; its lifespan loads, verifies and warms up every model."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            registry = await run_in_threadpool(ModelRegistry.load, settings)
        except BundleError as exc:
            log.error("cannot serve: %s", exc)
            raise
        await run_in_threadpool(registry.warm_up)
        registry.start_batching(settings)
        app.state.registry = registry
        log.info("ready: %s (default %s)", ", ".join(m.key for m in registry.all()), registry.default.key)
        yield
        app.state.registry = None
        await registry.stop_batching()

    app = FastAPI(
        title="vaeserve",
        version=_version(),
        summary="A variational autoencoder over HTTP: encode, decode, sample, reconstruct, score.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = None
    install_handlers(app)
    for router in (health.router, v1.router):
        for route in router.routes:  # a handler's docstring: its first line is the summary
            if isinstance(route, APIRoute) and route.endpoint.__doc__:
                route.summary, _, route.description = route.endpoint.__doc__.strip().partition("\n")
        app.include_router(router)
    return app

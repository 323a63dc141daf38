"""Liveness and readiness, for load balancers and Kubernetes probes; never behind a key."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.responses import problems
from app.errors import not_ready
from wire import v1 as s

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers", response_model=s.Health)
async def get_health() -> s.Health:
    return s.Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: every model is loaded, verified and warmed up",
    response_model=s.Readiness,
    responses=problems(503),
)
async def get_readiness(request: Request) -> s.Readiness:
    registry = request.app.state.registry
    if registry is None:
        raise not_ready()
    return s.Readiness(status="ready", models=[m.key for m in registry.all()])

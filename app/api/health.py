"""Liveness and readiness, for load balancers and Kubernetes probes; never behind a key."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app import schemas as s
from app.errors import ProblemError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=s.Health)
async def get_health() -> s.Health:
    """Liveness: the process answers."""
    return s.Health(status="ok")


@router.get("/readyz", response_model=s.Readiness, responses={503: {"content": {"application/problem+json": {}}}})
async def get_readiness(request: Request) -> s.Readiness:
    """Readiness: every model is loaded, verified and warmed up."""
    registry = request.app.state.registry
    if registry is None:
        raise ProblemError(503, "not-ready", "Service unavailable", "models are still loading", {"Retry-After": "1"})
    return s.Readiness(status="ready", models=[m.key for m in registry.all()])

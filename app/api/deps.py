"""Request dependencies as `Annotated` aliases: settings, the registry, the model asked for.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool,
a thread hop per dependency per request, which cost more than the model on small inputs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from app.errors import ProblemError
from app.registry import LoadedModel, ModelRegistry
from app.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry | None = request.app.state.registry
    if registry is None:
        raise ProblemError(503, "not-ready", "Service unavailable", "models are still loading", {"Retry-After": "1"})
    return registry


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]


async def get_model(
    registry: RegistryDep,
    model: Annotated[str | None, Query(description="model name; the default model when absent")] = None,
    version: Annotated[str | None, Query(description="model version; the highest when absent")] = None,
) -> LoadedModel:
    return registry.get(model, version)


ModelDep = Annotated[LoadedModel, Depends(get_model)]


def check_range(name: str, value: float, low: float, high: float) -> None:
    """A 422 naming the parameter when `value` is outside [low, high]."""
    if not low <= value <= high:
        raise ProblemError(
            422, "out-of-range", "Invalid request", f"{name} must be between {low} and {high}, got {value}"
        )

"""Request dependencies as `Annotated` aliases: settings, the registry, the model asked for, the operations.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool,
a thread hop per dependency per request, which cost more than the model on small inputs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from app.errors import not_ready
from app.serving.operations import Operations
from app.serving.registry import LoadedModel, ModelRegistry
from app.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry | None = request.app.state.registry
    if registry is None:
        raise not_ready()
    return registry


async def get_operations(request: Request) -> Operations:
    operations: Operations = request.app.state.operations
    return operations


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
OperationsDep = Annotated[Operations, Depends(get_operations)]


async def get_model(
    registry: RegistryDep,
    model: Annotated[str | None, Query(description="model name; the default model when absent")] = None,
    version: Annotated[str | None, Query(description="model version; the highest when absent")] = None,
) -> LoadedModel:
    return registry.get(model, version)


ModelDep = Annotated[LoadedModel, Depends(get_model)]

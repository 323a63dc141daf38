"""Operations: reload the model repository without a restart. Always needs an API key."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from app.api.deps import SettingsDep
from app.api.responses import problems
from app.errors import ServiceError
from app.serving.registry import reload_registry
from model.errors import BundleError
from wire import v1 as s

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post(
    "/reload",
    summary="Reload every bundle of the repository",
    response_model=s.Readiness,
    responses=problems(401, 403, 409),
)
async def reload_models(request: Request, settings: SettingsDep) -> s.Readiness:
    """On any error the old models keep serving (409); needs an API key."""
    if not settings.api_keys or not settings.admin_enabled:
        raise ServiceError(403, "admin-off", "Forbidden", "the admin API is off: it needs VAESERVE_API_KEYS")
    lock: asyncio.Lock = request.app.state.reload_lock
    try:
        registry = await reload_registry(request.app.state, settings, lock)
    except BundleError as exc:
        raise ServiceError(409, "reload-refused", "Reload refused", f"the old models keep serving: {exc}") from None
    return s.Readiness(status="reloaded", models=[m.key for m in registry.all()])

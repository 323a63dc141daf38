"""Optional API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>`.

With no keys configured every route is open. Keys are compared in constant time
(hmac.compare_digest) against every configured key, so the time taken does not tell how
much of a guess was right, nor which key matched.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from app.errors import ServiceError

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="vaeserve"'}
MISSING_KEY = "an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>"
WRONG_KEY = "the API key is not valid (the server's keys are its VAESERVE_API_KEYS)"


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


def key_is_valid(presented: str, keys: list[str]) -> bool:
    given = presented.encode()
    matches = [hmac.compare_digest(given, key.encode()) for key in keys]  # no early exit
    return any(matches)


async def require_api_key(request: Request) -> None:
    """A dependency: 401 with a Bearer challenge unless a configured key is presented."""
    keys: list[str] = request.app.state.settings.api_keys
    if not keys:
        return
    presented = presented_key(request)
    if presented is None:
        raise ServiceError(
            401,
            "unauthorized",
            "Unauthorized",
            "an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>",
            CHALLENGE,
        )
    if not key_is_valid(presented, keys):
        raise ServiceError(
            401,
            "unauthorized",
            "Unauthorized",
            "the API key is not valid (the server's keys are its VAESERVE_API_KEYS)",
            CHALLENGE,
        )

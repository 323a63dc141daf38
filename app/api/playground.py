"""GET /playground: a page to draw, score, sample, interpolate and traverse, from the package's static files.

Plain HTML, CSS and JavaScript modules (app/playground/), served as they are: no build step,
no CDN, nothing fetched from anywhere but this server, which the Content-Security-Policy
below enforces in the browser. The page uses the public API only, so it needs no route of
its own and no key to load; the API calls it makes ask for one like any client's.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(str(files("app") / "playground"))
PREFIX = "/playground"
# Only this origin: scripts, styles, fetches; images also from data: and blob: URLs (the API's PNGs).
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _PageFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def mount(app: FastAPI) -> None:
    """Serve the page at /playground/ (and /playground, redirected there)."""
    app.mount(PREFIX, _PageFiles(directory=STATIC, html=True), name="playground")

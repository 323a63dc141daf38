"""The floor: FastAPI + uvicorn that reads the body and answers a constant, no model.

    FLOOR_LATENT=16 uvicorn bench.peer_servers.floor:app --host 127.0.0.1 --port 8000

`POST /encode` reads the whole body and answers the JSON of a zero latent (mean and
log_var of FLOOR_LATENT values, serialised once), as long as a real encode answer; what no
server on this stack can beat. `GET /healthz` answers "ok".
"""

from __future__ import annotations

import json
import os

from fastapi import FastAPI, Request, Response

_ZEROS = [0.0] * int(os.environ.get("FLOOR_LATENT", "16"))
_ANSWER = json.dumps({"mean": _ZEROS, "log_var": _ZEROS}).encode()

app = FastAPI(title="floor")


@app.get("/healthz")
async def healthz() -> Response:
    return Response(b"ok", media_type="text/plain")


@app.post("/encode")
async def encode(request: Request) -> Response:
    await request.body()
    return Response(_ANSWER, media_type="application/json")

"""Hit every endpoint of a running vaeserve container and check the answers.

    python docker/smoke_check.py http://127.0.0.1:8000

Waits (bounded) for /readyz, then checks each v1 endpoint's status and content type, the
playground's files, a v2 inference, and a few values from the shipped model's manifest. Exits
non-zero on the first failure.
"""

from __future__ import annotations

import base64
import io
import sys
import time

import httpx2 as httpx
import numpy as np
from PIL import Image


def wait_ready(client: httpx.Client, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"not ready after {seconds:.0f} s")


def check(label: str, response: httpx.Response, status: int = 200, content_type: str = "application/json") -> None:
    got = response.headers.get("content-type", "")
    if response.status_code != status or not got.startswith(content_type):
        raise SystemExit(f"{label}: {response.status_code} {got}: {response.text[:300]}")
    print(f"  ok  {label}: {response.status_code} {got}")


def main(url: str) -> int:
    y, x = np.mgrid[0:28, 0:28]
    buffer = io.BytesIO()
    Image.fromarray((np.exp(-((x - 14) ** 2 + (y - 14) ** 2) / 30.0) * 255).astype(np.uint8)).save(buffer, "PNG")
    png = buffer.getvalue()
    with httpx.Client(base_url=url, timeout=60) as c:
        wait_ready(c)
        check("GET /healthz", c.get("/healthz"))
        check("GET /readyz", c.get("/readyz"))
        models = c.get("/v1/models")
        check("GET /v1/models", models)
        model = next(m for m in models.json()["models"] if m["default"])  # the one unnamed requests reach
        latent_dim = model["latent_dim"]
        check("GET /v1/models/{name}", c.get(f"/v1/models/{model['name']}"))
        check("POST /v1/encode (png)", c.post("/v1/encode", content=png, headers={"content-type": "image/png"}))
        check("POST /v1/encode (multipart)", c.post("/v1/encode", files=[("f", ("a.png", png, "image/png"))] * 2))
        b64 = base64.b64encode(png).decode()
        check("POST /v1/encode (json)", c.post("/v1/encode?sample=true", json={"images": [b64]}))
        decoded = c.post("/v1/decode", json={"latents": [[0.0] * latent_dim]}, headers={"accept": "image/png"})
        check("POST /v1/decode (png)", decoded, content_type="image/png")
        check("POST /v1/decode (json)", c.post("/v1/decode", json={"latents": [[0.0] * latent_dim] * 2}))
        check("GET /v1/samples (png)", c.get("/v1/samples?n=16&seed=7"), content_type="image/png")
        check("GET /v1/samples (json)", c.get("/v1/samples?n=2&format=json"))
        check("POST /v1/reconstruct", c.post("/v1/reconstruct", content=png, headers={"content-type": "image/png"}))
        scored = c.post("/v1/score", content=png, headers={"content-type": "image/png"})
        check("POST /v1/score", scored)
        if "is_anomaly" not in scored.json()["results"][0]:
            raise SystemExit("score has no decision")
        path = c.post("/v1/interpolate?steps=4", files=[("f", ("a.png", png, "image/png"))] * 2)
        check("POST /v1/interpolate", path)
        swept = c.post("/v1/traverse?format=png", json={"latents": [[0.0] * latent_dim]})
        check("POST /v1/traverse (png)", swept, content_type="image/png")
        check("GET /playground/", c.get("/playground/"), content_type="text/html")
        check("GET /playground/playground.css", c.get("/playground/playground.css"), content_type="text/css")
        for script in ("playground.js", "api.js", "sketchpad.js", "charts.js"):  # application/ or text/javascript
            answer = c.get(f"/playground/{script}")
            check(f"GET /playground/{script}", answer, content_type="")
            if "javascript" not in answer.headers["content-type"]:
                raise SystemExit(f"{script} is served as {answer.headers['content-type']}")
        check("GET /v2/health/ready", c.get("/v2/health/ready"), content_type="")
        check("GET /v2/models/{name}-scorer", c.get(f"/v2/models/{model['name']}-scorer"))
        shape = [1, model["input"]["channels"], model["input"]["height"], model["input"]["width"]]
        pixels = np.resize(np.arange(256), int(np.prod(shape)))  # 0..255 as UINT8
        image = {"name": "image", "datatype": "UINT8", "shape": shape, "data": pixels.tolist()}
        inferred = c.post(f"/v2/models/{model['name']}-encoder/infer", json={"inputs": [image]})
        check("POST /v2/models/{name}-encoder/infer", inferred)
        if [o["shape"] for o in inferred.json()["outputs"]] != [[1, latent_dim]] * 3:
            raise SystemExit(f"v2 encoder outputs: {inferred.text[:300]}")
        check("GET /metrics", c.get("/metrics"), content_type="text/plain")
        check("unknown model", c.get("/v1/models/nope"), 404, "application/problem+json")
        check("bad image", c.post("/v1/encode", content=b"nope", headers={"content-type": "image/png"}), 400,
              "application/problem+json")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

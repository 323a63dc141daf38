"""Soak test: mixed valid and invalid traffic against a real server, counting every answer.

    python -m bench.soak --duration 60 --concurrency 32        # against the shipped model
    python -m bench.soak --repository DIR --model NAME --duration 10 --json out.json

Starts `python -m app` on 127.0.0.1, sends `concurrency` loops of requests for `duration`
seconds (a bounded loop: it stops by itself), and reports requests sent, answers by status
class, valid requests that did not get 200, 5xx, lost responses (transport errors), and the
server's RSS after warm-up and at the end. tests/app/test_reliability.py runs it briefly;
docs/reliability.md holds a 60 s run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from subprocess import Popen

import httpx2 as httpx
import numpy as np
from PIL import Image

from bench.harness import PORT, rss_bytes, serve


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    valid: bool  # a valid request must get 200; an invalid one must get a 4xx
    content: bytes | None = None
    json_body: object = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadResult:
    sent: int = 0
    answered: int = 0
    lost: int = 0  # no HTTP answer at all (connection reset, timeout)
    by_class: dict[str, int] = field(default_factory=dict)
    valid_not_ok: int = 0
    invalid_not_4xx: int = 0
    server_errors: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)  # a few examples, for diagnosis


def digit_png() -> bytes:
    """A blurred blob, close enough to a digit to be an ordinary input."""
    y, x = np.mgrid[0:28, 0:28]
    pixels = (np.exp(-((x - 14) ** 2 + (y - 14) ** 2) / 40.0) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def mixed_calls(latent_dim: int, model: str | None = None) -> list[Call]:
    """A request mix: most valid, about a third invalid in different ways."""
    png = digit_png()
    q = f"model={model}&" if model else ""
    image = {"content-type": "image/png"}
    b64 = base64.b64encode(png).decode()
    return [
        Call("POST", f"/v1/encode?{q}seed=1", True, content=png, headers=image),
        Call("POST", f"/v1/encode?{q}sample=true", True, json_body={"images": [b64] * 4}),
        Call("POST", f"/v1/score?{q}importance_samples=16", True, content=png, headers=image),
        Call("POST", f"/v1/reconstruct?{q}importance_samples=8", True, content=png, headers=image),
        Call("POST", f"/v1/decode?{q}", True, json_body={"latents": [[0.0] * latent_dim] * 2}),
        Call("GET", f"/v1/samples?{q}n=4&seed=3", True),
        Call("GET", "/v1/models", True),
        Call("POST", f"/v1/encode?{q}", False, content=b"not an image", headers=image),
        Call("POST", f"/v1/decode?{q}", False, json_body={"latents": [[0.0] * (latent_dim + 1)]}),
        Call("GET", f"/v1/samples?{q}n=0", False),
        Call("GET", "/v1/models/no-such-model", False),
        Call("POST", f"/v1/score?{q}", False, content=b"a,b", headers={"content-type": "text/csv"}),
    ]


async def drive(
    url: str, calls: list[Call], duration: float, concurrency: int, headers: dict[str, str] | None = None
) -> LoadResult:
    """`concurrency` loops sending random calls until `duration` seconds have passed."""
    result = LoadResult()
    deadline = time.monotonic() + duration
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def loop(client: httpx.AsyncClient, rng: random.Random) -> None:
        while time.monotonic() < deadline:
            call = rng.choice(calls)
            result.sent += 1
            try:
                r = await client.request(
                    call.method, call.path, content=call.content, json=call.json_body, headers=call.headers
                )
            except httpx.TransportError as exc:
                result.lost += 1
                if len(result.errors) < 5:
                    result.errors.append(f"{call.method} {call.path}: {type(exc).__name__} {exc}")
                continue
            result.answered += 1
            status_class = f"{r.status_code // 100}xx"
            result.by_class[status_class] = result.by_class.get(status_class, 0) + 1
            result.server_errors += r.status_code >= 500
            if call.valid and r.status_code != 200:
                result.valid_not_ok += 1
                if len(result.errors) < 5:
                    result.errors.append(f"{call.method} {call.path}: {r.status_code} {r.text[:200]}")
            if not call.valid and not 400 <= r.status_code < 500:
                result.invalid_not_4xx += 1

    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits, headers=headers) as client:
        await asyncio.gather(*(loop(client, random.Random(i)) for i in range(concurrency)))
    result.seconds = round(time.monotonic() - started, 2)
    return result


@contextmanager
def server(
    repository: Path | None, env: dict[str, str] | None = None, *args: str
) -> Iterator[tuple[str, Popen[bytes]]]:
    """`python -m app` on a free 127.0.0.1 port; yields (url, process) once /readyz is 200."""
    argv = [sys.executable, "-m", "app", "--port", PORT, "--log-level", "warning", *args]
    if repository is not None:
        argv += ["--repository", str(repository)]
    with serve(argv, env={**os.environ, **(env or {})}) as live:
        yield live.url, live.proc


def soak(repository: Path | None, model: str | None, duration: float, concurrency: int) -> dict[str, object]:
    with server(repository) as (url, proc):
        latent_dim = httpx.get(f"{url}/v1/models").json()["models"][0]["latent_dim"]
        calls = mixed_calls(latent_dim, model)
        asyncio.run(drive(url, calls, min(5.0, duration / 4), concurrency))  # warm-up
        rss_before = rss_bytes(proc.pid)
        result = asyncio.run(drive(url, calls, duration, concurrency))
        rss_after = rss_bytes(proc.pid)
    report = asdict(result)
    report.update(
        rss_before_mb=round(rss_before / 2**20, 1),
        rss_after_mb=round(rss_after / 2**20, 1),
        rss_growth=round(rss_after / rss_before - 1, 4),
        requests_per_second=round(result.answered / result.seconds, 1),
        duration=duration,
        concurrency=concurrency,
    )
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Soak a real vaeserve process with mixed traffic.")
    p.add_argument("--repository", type=Path, help="model repository (default: the shipped one)")
    p.add_argument("--model", help="model name to send requests to (default: the default model)")
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--json", type=Path, help="also write the report here")
    args = p.parse_args(argv)
    print("$ python -m bench.soak " + " ".join(sys.argv[1:] if argv is None else argv), flush=True)
    report = soak(args.repository, args.model, args.duration, args.concurrency)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    ok = report["server_errors"] == report["lost"] == report["valid_not_ok"] == report["invalid_not_4xx"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

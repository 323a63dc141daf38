"""A/B of the Python work per request, A and B measured at the same time, one per core.

    python -m bench.paired --base main                 # this checkout (B) against main (A)
    python -m bench.paired --base HEAD~1 --pairs 8 --requests 20000

This machine's speed moves by up to 2x within minutes, so two servers loaded one after the
other (`bench.ab`) differ by more than most changes to the request path. Here A and B run
*simultaneously*, A on core 0 and B on core 1, then swapped, so whatever slows the machine
slows both; each run drives its own tree's ASGI app in-process (no sockets, no uvicorn, no
load generator): `--clients` concurrent clients send single-PNG `POST /v1/encode` requests
to the shipped model with batching on, as the service runs them. The number compared is the
CPU time of the event loop's thread per request (`time.thread_time`), which leaves out ONNX
Runtime's thread: what the request path costs in Python. Every answer must be a 200. The
driver imports nothing but the measured tree's `app` (and the standard library), so any
revision with `app.main.create_app` and `app.logs.log_config` can be the base.

Prints each pair's B/A and the median, lowest and highest; `--out` writes them as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

CORES = (0, 1)
RESULT = "paired-result "  # the driver's last line: this, then JSON


@dataclass(frozen=True)
class Measured:
    loop_us: float  # the event loop thread's CPU per request, µs
    process_us: float  # the whole process's CPU per request (ONNX Runtime's thread too), µs
    per_s: float  # requests per second of wall time


def drive(requests: int, clients: int, png: bytes) -> Measured:
    """In this process: the app of the tree on sys.path, `requests` encodes by `clients` at once."""
    import logging.config

    import uvloop

    from app.logs import log_config
    from app.main import create_app
    from app.settings import Settings

    logging.config.dictConfig(log_config("json", "info"))  # as the service logs: one access line a request

    async def run() -> Measured:
        app = create_app(Settings())
        ready, stop = asyncio.Event(), asyncio.Event()

        async def lifespan() -> None:
            sent = False

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "lifespan.startup"}
                await stop.wait()
                return {"type": "lifespan.shutdown"}

            async def send(message: MutableMapping[str, Any]) -> None:
                if message["type"] == "lifespan.startup.complete":
                    ready.set()
                elif message["type"] == "lifespan.startup.failed":
                    raise RuntimeError(message.get("message", "start-up failed"))

            await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)

        task = asyncio.create_task(lifespan())
        await asyncio.wait_for(ready.wait(), 120)
        headers = [(b"content-type", b"image/png"), (b"content-length", str(len(png)).encode())]

        async def one() -> None:
            body_sent, statuses = False, []
            never = asyncio.Event()

            async def receive() -> dict[str, Any]:
                nonlocal body_sent
                if not body_sent:
                    body_sent = True
                    return {"type": "http.request", "body": png, "more_body": False}
                await never.wait()  # the client never goes
                return {"type": "http.disconnect"}

            async def send(message: MutableMapping[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                "scheme": "http", "path": "/v1/encode", "raw_path": b"/v1/encode", "query_string": b"",
                "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
                "state": {},
            }  # fmt: skip
            await app(scope, receive, send)
            if statuses != [200]:
                raise RuntimeError(f"/v1/encode answered {statuses}")

        async def load(n: int) -> None:
            left = n

            async def client() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await one()

            await asyncio.gather(*(client() for _ in range(clients)))

        await load(min(requests, 2000))  # warm-up: batches, caches, the allocator
        cpu, wall, loop = time.process_time(), time.perf_counter(), time.thread_time()
        await load(requests)
        cpu, wall, loop = time.process_time() - cpu, time.perf_counter() - wall, time.thread_time() - loop
        stop.set()
        await task
        return Measured(loop / requests * 1e6, cpu / requests * 1e6, requests / wall)

    return uvloop.run(run())


def start(tree: Path, core: int, requests: int, clients: int, png: Path) -> subprocess.Popen[str]:
    """This module's driver on `tree`'s code, pinned to `core`."""
    from bench.harness import without_settings

    env = without_settings(
        PYTHONPATH=str(tree),
        VAESERVE_BATCHING="true",
        VAESERVE_ORT_INTRA_OP_THREADS="1",
        VAESERVE_MODEL_REPOSITORY=str(tree / "model" / "zoo"),  # the shipped repository, as `python -m app` serves it
        VAESERVE_DEFAULT_MODEL="mnist-vae",
        VAESERVE_LOG_FORMAT="json",
    )
    argv = ["taskset", "-c", str(core), sys.executable, str(Path(__file__)), "--drive", str(requests), str(clients)]
    return subprocess.Popen([*argv, str(png)], cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)  # fmt: skip  # the access log goes nowhere: both sides alike


def result(process: subprocess.Popen[str], timeout_s: float) -> Measured:
    out, _ = process.communicate(timeout=timeout_s)
    lines = [line for line in out.splitlines() if line.startswith(RESULT)]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"the driver failed (exit {process.returncode}): {out[-2000:]}")
    return Measured(**json.loads(lines[-1][len(RESULT) :]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.paired", description=__doc__.split("\n")[0])
    p.add_argument("--base", required=True, help="the git revision to compare with (A); this checkout is B")
    p.add_argument("--pairs", type=int, default=6, help="pairs of simultaneous runs, cores swapped each time")
    p.add_argument("--requests", type=int, default=10_000, help="requests per run (after 2,000 of warm-up)")
    p.add_argument("--clients", type=int, default=64, help="concurrent clients")
    p.add_argument("--out", type=Path, help="raw numbers (JSON)")
    args = p.parse_args(argv)
    if not 1 <= args.pairs <= 40 or not 100 <= args.requests <= 200_000 or not 1 <= args.clients <= 1024:
        p.error("--pairs in [1, 40], --requests in [100, 200000], --clients in [1, 1024]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not set(CORES) <= os.sched_getaffinity(0):
        raise SystemExit(f"error: needs cores {CORES}")
    from bench.ab import checkout
    from bench.harness import ROOT
    from bench.load import find_bundle
    from bench.peers import Model, pngs
    from model.bundle import load_bundle

    bundle = find_bundle(ROOT / "model" / "zoo", "mnist-vae")
    png_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"vaeserve-paired-{os.getpid()}.png"
    png_path.write_bytes(pngs(Model(bundle, load_bundle(bundle).manifest, png_path.parent), 1)[0])
    timeout_s = 120 + args.requests / 50  # even at 50 requests a second
    pairs: list[dict[str, Any]] = []
    try:
        with checkout(args.base) as base:
            for i in range(args.pairs):
                core_a, core_b = CORES if i % 2 == 0 else CORES[::-1]
                a = start(base, core_a, args.requests, args.clients, png_path)
                b = start(ROOT, core_b, args.requests, args.clients, png_path)
                measured_a, measured_b = result(a, timeout_s), result(b, timeout_s)
                ratio = measured_b.loop_us / measured_a.loop_us
                pairs.append({"core_a": core_a, "a": vars(measured_a), "b": vars(measured_b), "b_over_a": ratio})
                print(f"pair {i + 1}: A {measured_a.loop_us:6.1f} µs (core {core_a}), B {measured_b.loop_us:6.1f} µs "
                      f"(core {core_b}) of loop CPU a request; B/A {ratio:.3f}", flush=True)  # fmt: skip
    finally:
        png_path.unlink(missing_ok=True)
    ratios = [p["b_over_a"] for p in pairs]
    summary = {"median": median(ratios), "lowest": min(ratios), "highest": max(ratios)}
    print(f"\nA = {args.base}, B = this checkout: loop CPU per request B/A, median {summary['median']:.3f} "
          f"(lowest {summary['lowest']:.3f}, highest {summary['highest']:.3f}) of {len(pairs)} pairs")  # fmt: skip
    if args.out is not None:
        doc = {"base": args.base, "requests": args.requests, "clients": args.clients, "pairs": pairs, **summary}
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--drive":  # the driver, in the tree being measured
        sys.path[0] = os.getcwd()  # that tree's app/, not this file's folder
        measured = drive(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]).read_bytes())
        print(RESULT + json.dumps(vars(measured)), flush=True)
        sys.exit(0)
    sys.exit(main())

"""Load benchmark: vaeserve against the service a typical user writes, and against its own ceiling.

    python -m bench.load                 # the shipped model and a 64x64 RGB model, 10 s per run, about 6 minutes
    python -m bench.load --quick         # 2 s per run, c=1 and 16 only: a smoke test, about a minute
    python -m bench.load --repository /tmp/zoo --model mnist-vae --out /tmp/load.json

For two models, the shipped 28x28 one (`--repository`, `--model`) and a 64x64x3 conv VAE with
random weights (bench/make_big_model.py), one run measures with `hey`, at concurrency 1, 16 and 64:

    ceiling    GET /healthz on vaeserve: its HTTP stack and middleware, no model
    naive      POST /encode on bench/naive_app.py under uvicorn: a multipart upload, torch eager
    off, on    POST /v1/encode on vaeserve, a raw image/png body, micro-batching off and on

then 256 images per request as an application/x-npy body to vaeserve (batching on, c=1), in
images/s, against ONNX Runtime's encoder called in-process at batch 1 and 256. Also the cold
start of vaeserve on the 28x28 model (process start to the first 200 from /readyz, median of 3)
and each server's RSS, summed over its process tree, before and after its load.

Every server runs on core 0, with one ONNX Runtime (or torch) thread; hey runs on core 1.
Throughput counts 2xx answers only; any other answer or transport error is shown in the
table, and makes the exit status 1. Raw numbers go to --out (bench/results/load.json).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np
import onnxruntime
from PIL import Image

from bench.harness import PORT, ROOT, Live, repo_path, rss_bytes, serve, without_settings
from model.bundle import InputSpec, Manifest, list_repository, load_bundle
from model.runtime import RuntimeOptions, VAERuntime

SERVER_CORE, HEY_CORE = 0, 1
BATCH = 256  # images per batched request, and the in-process batch compared with it
READY_TIMEOUT_S = 120.0
COLD_STARTS = 3
WARM_UP_REQUESTS = 5
BOUNDARY = "vaeserve-bench-boundary-7f3a9c"
SERVER_NAMES = {"naive": "naive (FastAPI + torch)", "off": "vaeserve, batching off", "on": "vaeserve, batching on"}
SMOKE_BUNDLE = (
    "python -m training --data mnist --epochs 1 --set 'model.channels=[8,16]' --set 'model.hidden=[32]' "
    "--set calibration.test_importance_samples=10 --out /tmp/bench-smoke/mnist-vae/1 --run-dir /tmp/bench-smoke/run -q"
)


# -- request bodies ------------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    path: Path
    content_type: str
    images: int

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()


def random_png(spec: InputSpec, rng: np.random.Generator) -> bytes:
    shape = (spec.height, spec.width) if spec.channels == 1 else (spec.height, spec.width, spec.channels)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(png: bytes) -> bytes:
    """One form field `file` holding the PNG, as a browser or `requests` sends it."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="image.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    )
    return head.encode() + png + f"\r\n--{BOUNDARY}--\r\n".encode()


def npy_batch(spec: InputSpec, rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, rng.random((BATCH, spec.channels, spec.height, spec.width), dtype=np.float32))
    return buffer.getvalue()


def make_bodies(spec: InputSpec, folder: Path) -> dict[str, Body]:
    """The png, multipart and npy bodies for one model's input, written where hey can read them."""
    rng = np.random.default_rng(0)
    png = random_png(spec, rng)
    contents = {
        "png": (png, "image/png", 1),
        "multipart": (multipart(png), f"multipart/form-data; boundary={BOUNDARY}", 1),
        "npy": (npy_batch(spec, rng), "application/x-npy", BATCH),
    }
    folder.mkdir(parents=True, exist_ok=True)
    bodies = {}
    for kind, (data, content_type, images) in contents.items():
        path = folder / f"body.{kind}"
        path.write_bytes(data)
        bodies[kind] = Body(path, content_type, images)
    return bodies


# -- servers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready_path: str


@contextmanager
def running(spec: ServerSpec, pin: bool = True) -> Iterator[Live]:
    """The server pinned to SERVER_CORE (unless not `pin`), once ready; stopped by its PID at the end."""
    argv = ["taskset", "-c", str(SERVER_CORE), *spec.argv] if pin else spec.argv
    with serve(argv, ready_path=spec.ready_path, env=spec.env, timeout_s=READY_TIMEOUT_S) as live:
        yield live


def rss_kib(pid: int) -> int:
    return rss_bytes(pid) // 1024


def vaeserve(bundle: Path, model: str, batching: bool) -> ServerSpec:
    argv = [sys.executable, "-m", "app", "--repository", str(bundle), "--port", PORT, "--default-model", model]
    env = without_settings(
        VAESERVE_BATCHING=str(batching).lower(), VAESERVE_ORT_INTRA_OP_THREADS="1", VAESERVE_WORKERS="1"
    )
    return ServerSpec("on" if batching else "off", argv, env, "/readyz")


def naive(bundle: Path) -> ServerSpec:
    argv = [sys.executable, "-m", "uvicorn", "naive_app:app", "--app-dir", "bench"]
    argv += ["--host", "127.0.0.1", "--port", PORT, "--workers", "1"]
    return ServerSpec("naive", argv, without_settings(NAIVE_BUNDLE=str(bundle)), "/healthz")


# -- load with hey -------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    request: str  # "healthz", "encode" or "encode-256"
    path: str
    body: Body | None
    concurrencies: tuple[int, ...]

    @property
    def label(self) -> str:
        if self.body is None:
            return f"GET {self.path}"
        kind = self.body.content_type.split(";")[0]
        return f"POST {self.path} {kind}" + (f", {self.body.images} images" if self.body.images > 1 else "")


@dataclass(frozen=True)
class Run:
    server: str
    request: str
    label: str
    concurrency: int
    images_per_request: int
    seconds: float
    status_codes: dict[int, int]
    errors: dict[str, int]  # transport errors (timeouts, resets) by hey's message
    latency_s: dict[int, float]  # percentile -> seconds, over every answer hey got
    rss_kib_after: int  # the server's, summed over its process tree

    @property
    def ok(self) -> int:
        return sum(n for code, n in self.status_codes.items() if 200 <= code < 300)

    @property
    def failed(self) -> int:
        return sum(self.status_codes.values()) - self.ok + sum(self.errors.values())

    @property
    def per_s(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def images_per_s(self) -> float:
        return self.per_s * self.images_per_request

    def ms(self, percentile: int) -> float | None:
        value = self.latency_s.get(percentile)
        return None if value is None else value * 1000

    def to_json(self) -> dict[str, Any]:
        derived = {"ok": self.ok, "failed": self.failed, "ok_per_s": self.per_s, "images_per_s": self.images_per_s}
        return {**asdict(self), **derived}


def hey(
    url: str,
    concurrency: int,
    seconds: float,
    body: Body | None,
    headers: dict[str, str] | None = None,
    pin: bool = True,
) -> str:
    """hey's report of `concurrency` clients for `seconds`, pinned to HEY_CORE unless not `pin`."""
    cmd = ["taskset", "-c", str(HEY_CORE)] if pin else []
    cmd += ["hey", "-z", f"{seconds:g}s", "-c", str(concurrency), "-t", "30"]
    if body is not None:
        cmd += ["-m", "POST", "-T", body.content_type, "-D", str(body.path)]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    done = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60, check=True)
    return done.stdout


def parse_hey(text: str) -> tuple[float, dict[int, int], dict[str, int], dict[int, float]]:
    """hey's summary -> (total seconds, answers by status, errors by message, latency percentiles)."""
    total = re.search(r"Total:\s+([\d.]+) secs", text)
    if total is None:
        raise RuntimeError(f"hey printed no summary:\n{text}")
    answers, _, failures = text.partition("Error distribution:")
    statuses = {int(code): int(n) for code, n in re.findall(r"^\s+\[(\d{3})\]\s+(\d+) responses", answers, re.M)}
    errors = {message.strip(): int(n) for n, message in re.findall(r"^\s+\[(\d+)\]\s+(.+)$", failures, re.M)}
    percentiles = re.findall(r"^\s+(\d+)%+ in ([\d.]+) secs", answers, re.M)
    latency = {int(p): float(s) for p, s in percentiles if float(s) > 0}  # hey prints 0 for those too few answers give
    return float(total.group(1)), statuses, errors, latency


def measure(server: str, live: Live, target: Target, concurrency: int, seconds: float) -> Run:
    total, statuses, errors, latency = parse_hey(hey(live.url + target.path, concurrency, seconds, target.body))
    images = target.body.images if target.body else 0
    rss = rss_kib(live.pid)
    run = Run(server, target.request, target.label, concurrency, images, total, statuses, errors, latency, rss)
    flag = f", {run.failed} FAILED" if run.failed else ""
    print(f"  {SERVER_NAMES[server]:24} {target.label:44} c={concurrency:<3} {run.per_s:9.1f} req/s{flag}", flush=True)
    return run


def measure_rate(url: str, body: Body, concurrency: int, seconds: float) -> float:
    """2xx answers per second of one hey run; any other answer or transport error raises."""
    total, statuses, errors, _ = parse_hey(hey(url, concurrency, seconds, body))
    bad = {code: n for code, n in statuses.items() if not 200 <= code < 300}
    if bad or errors:
        raise RuntimeError(f"{url}: answers {statuses}, errors {errors}")
    return sum(statuses.values()) / total


def check(url: str, body: Body | None, latent_dim: int) -> None:
    """Warm the endpoint up, and fail unless it answers 200 with one latent of the right size per image."""
    with httpx.Client(timeout=60.0) as client:
        for _ in range(WARM_UP_REQUESTS):
            if body is None:
                response = client.get(url)
            else:
                response = client.post(url, content=body.data, headers={"content-type": body.content_type})
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:500]}")
    if body is not None and encoded_shape(response.json()) != (body.images, latent_dim):
        raise RuntimeError(f"{url} answered {encoded_shape(response.json())}, expected {(body.images, latent_dim)}")


def encoded_shape(doc: dict[str, Any]) -> tuple[int, int]:
    """(images, latent size) of an encode answer, vaeserve's ({"results": [...]}) or the naive one's."""
    rows = doc.get("results", [doc])
    return len(rows), len(rows[0]["mean"])


# -- one model -----------------------------------------------------------------------------


@dataclass
class ServerResult:
    rss_kib_before: int
    rss_kib_after: int
    runs: list[Run]


@dataclass
class ModelResult:
    manifest: Manifest
    bundle: Path
    servers: dict[str, ServerResult] = field(default_factory=dict)
    ort_images_per_s: dict[int, float] = field(default_factory=dict)

    @property
    def title(self) -> str:
        spec = self.manifest.input
        return (
            f"{self.manifest.name}:{self.manifest.version} ({spec.channels}x{spec.height}x{spec.width}, "
            f"latent {self.manifest.latent_dim})"
        )

    def run(self, server: str, request: str, concurrency: int) -> Run | None:
        runs = self.servers[server].runs if server in self.servers else []
        return next((r for r in runs if r.request == request and r.concurrency == concurrency), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.manifest.name,
            "version": self.manifest.version,
            "bundle": repo_path(self.bundle),
            "input": self.manifest.input.model_dump(),
            "latent_dim": self.manifest.latent_dim,
            "servers": {
                name: {
                    "rss_kib_before": s.rss_kib_before,
                    "rss_kib_after": s.rss_kib_after,
                    "runs": [r.to_json() for r in s.runs],
                }
                for name, s in self.servers.items()
            },
            "in_process_ort_images_per_s": self.ort_images_per_s,
        }


def measure_server(
    spec: ServerSpec, targets: list[Target], latent_dim: int, seconds: float, logs: Path
) -> ServerResult:
    with running(spec) as live:
        before = rss_kib(live.pid)
        runs = []
        for target in targets:
            check(live.url + target.path, target.body, latent_dim)
            runs += [measure(spec.name, live, target, c, seconds) for c in target.concurrencies]
        return ServerResult(before, rss_kib(live.pid), runs)


def bench_model(bundle: Path, concurrencies: tuple[int, ...], seconds: float, work: Path) -> ModelResult:
    manifest = load_bundle(bundle).manifest
    result = ModelResult(manifest, bundle)
    print(f"\n{result.title}, {bundle}", flush=True)
    bodies = make_bodies(manifest.input, work / f"{manifest.name}-bodies")
    dim = manifest.latent_dim
    encode = [Target("encode", "/v1/encode", bodies["png"], concurrencies)]
    plan = {
        "naive": (naive(bundle), [Target("encode", "/encode", bodies["multipart"], concurrencies)]),
        "off": (vaeserve(bundle, manifest.name, batching=False), encode),
        "on": (
            vaeserve(bundle, manifest.name, batching=True),
            [
                Target("healthz", "/healthz", None, concurrencies),
                *encode,
                Target("encode-256", "/v1/encode", bodies["npy"], (1,)),
            ],
        ),
    }
    for name, (spec, targets) in plan.items():
        result.servers[name] = measure_server(spec, targets, dim, seconds, work)
    result.ort_images_per_s = {batch: ort_images_per_s(bundle, batch, seconds) for batch in (1, BATCH)}
    print(f"  in-process ONNX Runtime encode: {result.ort_images_per_s} images/s", flush=True)
    return result


@contextmanager
def pinned(core: int) -> Iterator[None]:
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def ort_images_per_s(bundle: Path, batch: int, seconds: float, max_calls: int = 100_000) -> float:
    """VAERuntime.encode on random images at `batch`, one thread on SERVER_CORE, as the server runs it."""
    runtime = VAERuntime(load_bundle(bundle), RuntimeOptions(intra_op_threads=1, inter_op_threads=1))
    spec = runtime.input
    images = np.random.default_rng(0).random((batch, spec.channels, spec.height, spec.width), dtype=np.float32)
    with pinned(SERVER_CORE):
        runtime.encode(images)
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds and calls < max_calls:
            runtime.encode(images)
            calls += 1
        return batch * calls / (time.perf_counter() - started)


def cold_starts(bundle: Path, work: Path) -> list[float]:
    """Seconds from process start to the first 200 from /readyz, for COLD_STARTS fresh servers."""
    name = load_bundle(bundle).manifest.name  # what the service calls it: the manifest's name, not the folder's
    times = []
    for _ in range(COLD_STARTS):
        with running(vaeserve(bundle, name, batching=True)) as live:
            times.append(live.ready_s)
    return times


# -- the report ----------------------------------------------------------------------------


def ratio(top: float | None, bottom: float | None) -> float | None:
    return None if top is None or bottom is None or bottom == 0 else top / bottom


def ratios(m: ModelResult, c: int) -> dict[str, float | None]:
    """The comparisons the table shows, at the highest concurrency `c` measured."""

    def per_s(server: str, request: str, concurrency: int = c) -> float | None:
        run = m.run(server, request, concurrency)
        return None if run is None else run.per_s

    def ms(server: str, request: str, concurrency: int, percentile: int) -> float | None:
        run = m.run(server, request, concurrency)
        return None if run is None else run.ms(percentile)

    batched = m.run("on", "encode-256", 1)
    p50_c1, ceiling_p50_c1 = ms("on", "encode", 1, 50), ms("on", "healthz", 1, 50)
    return {
        "vaeserve_over_naive": ratio(per_s("on", "encode"), per_s("naive", "encode")),
        "vaeserve_off_over_naive": ratio(per_s("off", "encode"), per_s("naive", "encode")),
        "vaeserve_over_ceiling": ratio(per_s("on", "encode"), per_s("on", "healthz")),
        "batching_on_over_off": ratio(per_s("on", "encode"), per_s("off", "encode")),
        "batched_256_over_ort_256": ratio(batched.images_per_s if batched else None, m.ort_images_per_s.get(BATCH)),
        "p99_over_p50": ratio(ms("on", "encode", c, 99), ms("on", "encode", c, 50)),
        "p50_c1_minus_ceiling_ms": None if p50_c1 is None or ceiling_p50_c1 is None else p50_c1 - ceiling_p50_c1,
    }


def fmt(value: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def runs_table(m: ModelResult) -> list[str]:
    lines = [
        f"### {m.title}",
        "",
        "| server | request | c | req/s (2xx) | images/s | p50 ms | p99 ms | not 2xx / errors | RSS MiB after |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, server in m.servers.items():
        for r in server.runs:
            images = fmt(r.images_per_s) if r.images_per_request else "-"
            failed = f"**{r.failed} ⚠**" if r.failed else "0"
            who = f"ceiling ({SERVER_NAMES[name]})" if r.request == "healthz" else SERVER_NAMES[name]
            lines.append(
                f"| {who} | {r.label} | {r.concurrency} | {r.per_s:,.1f} | {images} "
                f"| {fmt(r.ms(50), '.1f')} | {fmt(r.ms(99), '.1f')} | {failed} | {r.rss_kib_after / 1024:,.0f} |"
            )
    ort = ", ".join(f"batch {b}: {v:,.0f} images/s" for b, v in m.ort_images_per_s.items())
    return [*lines, "", f"In-process ONNX Runtime encode, one thread: {ort}.", ""]


def ratios_table(models: list[ModelResult], c: int, cold: list[float]) -> list[str]:
    rows = {
        f"vaeserve (batching on) / naive, req/s at c={c}": ("vaeserve_over_naive", ".2f", "x"),
        f"vaeserve (batching off) / naive, req/s at c={c}": ("vaeserve_off_over_naive", ".2f", "x"),
        f"vaeserve (batching on) / its /healthz ceiling, req/s at c={c}": ("vaeserve_over_ceiling", ".3f", "x"),
        f"batching on / off, req/s at c={c}": ("batching_on_over_off", ".2f", "x"),
        f"{BATCH} images per request over HTTP / in-process ONNX Runtime at batch {BATCH}, images/s": (
            "batched_256_over_ort_256",
            ".2f",
            "x",
        ),
        f"p99 / p50 at c={c} (batching on)": ("p99_over_p50", ".1f", "x"),
        "p50 at c=1 minus the ceiling's p50 at c=1 (batching on)": ("p50_c1_minus_ceiling_ms", ".1f", " ms"),
    }
    computed = [ratios(m, c) for m in models]
    lines = [
        "### Ratios",
        "",
        "| | " + " | ".join(m.manifest.name for m in models) + " |",
        "|---|" + "--:|" * len(models),
    ]
    for label, (key, spec, suffix) in rows.items():
        lines.append(f"| {label} | " + " | ".join(fmt(r[key], spec, suffix) for r in computed) + " |")
    for name in SERVER_NAMES:
        cells = [
            f"{s.rss_kib_before / 1024:,.0f} → {s.rss_kib_after / 1024:,.0f}" for s in (m.servers[name] for m in models)
        ]
        lines.append(f"| RSS MiB before → after load, {SERVER_NAMES[name]} | " + " | ".join(cells) + " |")
    cold_ms = ", ".join(f"{t * 1000:,.0f}" for t in cold)
    lines += [
        "",
        f"Cold start of vaeserve on {models[0].manifest.name} (process start to the first 200 from /readyz): "
        f"median {statistics.median(cold) * 1000:,.0f} ms of {cold_ms} ms.",
    ]
    return lines


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Load benchmark of vaeserve against a naive FastAPI + torch service.")
    p.add_argument("--repository", type=Path, default=ROOT / "model" / "zoo", help="holds <model>/<version>/")
    p.add_argument(
        "--model", default="mnist-vae", help="the 28x28 model: its folder in --repository (the highest version is used)"
    )
    p.add_argument("--duration", type=float, help="seconds per hey run (default 10; 2 with --quick)")
    p.add_argument("--quick", action="store_true", help="2 s per run, concurrency 1 and 16 only: a smoke test")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json", help="raw numbers (JSON)")
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 2.0 if args.quick else 10.0
    if args.duration <= 0:
        p.error("--duration must be positive")
    return args


def find_bundle(repository: Path, model: str) -> Path:
    versions = {version: path for (name, version), path in list_repository(repository).items() if name == model}
    if not versions:
        raise SystemExit(
            f"error: no bundle of {model!r} in {repository}; for a smoke test make one with\n  {SMOKE_BUNDLE}"
        )
    return versions[max(versions, key=int)]


def make_big_bundle(work: Path) -> Path:
    out = work / "repository" / "big-vae" / "1"
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_big_model.py"), "--out", str(out)], check=True)
    return out


def check_machine() -> None:
    cores = os.sched_getaffinity(0)
    if not {SERVER_CORE, HEY_CORE} <= cores:
        raise SystemExit(f"error: needs cores {SERVER_CORE} and {HEY_CORE}, this process may use {sorted(cores)}")


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m bench.load " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"$ {command}", flush=True)
    check_machine()
    concurrencies = (1, 16) if args.quick else (1, 16, 64)
    started, at_start = datetime.now(UTC), machine()
    os.sched_setaffinity(0, {HEY_CORE})  # keep this process's polling off the servers' core
    with tempfile.TemporaryDirectory(prefix="vaeserve-load-") as tmp:
        work = Path(tmp)
        bundles = [find_bundle(args.repository, args.model), make_big_bundle(work)]
        cold = cold_starts(bundles[0], work)
        models = [bench_model(b, concurrencies, args.duration, work) for b in bundles]
    top = concurrencies[-1]
    report = {
        "command": command,
        "started": started.isoformat(),
        "machine_at_start": at_start,
        "machine_at_end": machine(),
        "options": {"duration_s": args.duration, "concurrencies": concurrencies, "server_core": SERVER_CORE},
        "cold_start_s": {"bundle": repo_path(bundles[0]), "samples": cold, "median": statistics.median(cold)},
        "models": [m.to_json() | {"ratios": ratios(m, top)} for m in models],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n$ {command}\n")
    load = at_start["load_average"][0]
    print(
        f"{at_start['cpus']} cores, load average {load:.2f} at start; servers on core {SERVER_CORE}, hey on core "
        f"{HEY_CORE}; {args.duration:g} s per run.\n"
    )
    print("\n".join([line for m in models for line in runs_table(m)] + ratios_table(models, top, cold)))
    print(f"\nRaw numbers: {args.out}")
    failed = [r for m in models for s in m.servers.values() for r in s.runs if r.failed]
    if failed:
        print(f"\nWARNING: {len(failed)} runs had answers other than 2xx, or errors: see the table.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

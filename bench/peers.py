"""vaeserve against the model servers a user would pick instead, on the same ONNX files, in one run.

    python -m bench.peers                              # both models, 3 rounds of 10 s a point; docs/benchmarks.md
    python -m bench.peers --duration 3 --rounds 1 --out /tmp/peers.json   # a smoke run
    python -m bench.peers --peers floor,pytriton,vaeserve --models shipped,fundus
    python -m bench.peers --models runs/int8/mnist-vae  # any bundle, e.g. an int8 one from training.quantize

For each encoder asked (--models: the shipped model's model/zoo/mnist-vae/<highest>/encoder.onnx,
the 64x64x3 conv encoder of bench/make_big_model.py, the shipped colour model fundus-vae, or a
bundle's folder), every server below serves that same encoder.onnx with one ONNX Runtime
thread, pinned to core 0 with taskset, while `hey` on core 1 sends single-image PNG encodes
at c=64 for --duration seconds:

    floor      FastAPI + uvicorn that reads the body and answers a constant: the stack's floor
    naive      FastAPI + ONNX Runtime, one session.run per request (bench/naive_app.py), multipart
    pytriton   PyTriton: Triton's C++ HTTP front end and dynamic batcher; binary BYTES tensor
    mlserver   MLServer with adaptive batching; V2 JSON with a base64 BYTES tensor
    litserve   LitServe with batching (1 ms); JSON with a base64 PNG
    vaeserve   this service, batching on: a raw image/png body, and JSON base64 on the same server
    vaeserve2  the same with two workers (VAESERVE_WORKERS=2, one per core): for --cores shared

With --cores shared nothing is pinned: every server and hey may use every core (what the
workers of vaeserve2, and PyTriton's threads, need to show); the one-core figures stay one
core's.

The servers of one model are all started at once and loaded in --rounds rounds, one point
per server and wire a round, the order turned by one server each round, so a drift of the
machine's load falls on all of them; in-process ONNX Runtime is measured before each round.
A server's req/s is its median over rounds; each ratio is taken within a round, and the
report gives the median ratio with the lowest and highest.

PyTriton, MLServer and LitServe are installed by this script, each into its own virtual environment
under --venvs with the pinned versions in PEERS (PyPI only), made once and reused. A peer
that fails to install, start, or answer correctly is reported as such and the run goes on.

Before its load, every server answers 16 different PNGs sent at once (so batches form), and
each answer is checked against ONNX Runtime run directly on the same pixels (max abs
difference <= CHECK_TOLERANCE); the load body's answer is checked too. The report gives
req/s (2xx only), p50 and p99, the mean batch each server ran during the load where it can
be known (vaeserve: vaeserve_batch_size in /metrics; PyTriton: Triton's nv_inference_count /
nv_inference_exec_count; MLServer: counters the runtime keeps; naive: 1 by construction),
in-process ONNX Runtime images/s at batch 64 on one thread, and the ratios: vaeserve over
each peer, and over the one-core bound 1 / (floor latency + ORT compute per image at batch
64), where the floor latency is 1 / the floor's req/s in the same round. Raw numbers: --out (JSON).

Exit status 0 when every selected peer ran and answered only 2xx, 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

import httpx2 as httpx
import numpy as np
import onnxruntime
import PIL
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import PORT, ROOT, Live, free_port, repo_path, without_settings
from bench.load import (
    BOUNDARY,
    HEY_CORE,
    Body,
    Run,
    ServerSpec,
    check_machine,
    find_bundle,
    fmt,
    hey,
    machine,
    make_big_bundle,
    multipart,
    naive,
    ort_images_per_s,
    parse_hey,
    random_png,
    ratio,
    rss_kib,
    running,
    vaeserve,
)
from bench.venvs import VenvError, ensure_venv
from model.bundle import Manifest, load_bundle
from model.errors import BundleError
from model.preprocess import decode_image
from model.runtime import RuntimeOptions, VAERuntime

CONCURRENCY = 64
ORT_BATCH = 64
CHECK_IMAGES = 16
CHECK_TOLERANCE = 1e-4  # max abs difference of mean and log_var from ONNX Runtime run directly
SAME_AS_OURS = [f"onnxruntime=={onnxruntime.__version__}", f"pillow=={PIL.__version__}"]  # one ORT build for all
PEERS: dict[str, list[str]] = {  # pinned installs, each in its own venv
    "pytriton": ["nvidia-pytriton==0.7.0", "numpy==1.26.4", *SAME_AS_OURS],
    "mlserver": ["mlserver==1.7.1", "numpy==2.4.6", *SAME_AS_OURS],
    "litserve": ["litserve==0.2.19", "numpy==2.4.6", *SAME_AS_OURS],
}
# Triton's Python backend stub links against the system's libpython3.11: its venv must use
# that interpreter (Debian's), or the stub runs a 3.11.2 core on another 3.11's stdlib.
SYSTEM_PYTHON = "/usr/bin/python3.11"
ALL_PEERS = ("floor", "naive", "pytriton", "mlserver", "litserve", "vaeserve", "vaeserve2")
MODEL_KEYS = ("shipped", "big", "fundus")


# -- one model, as every peer serves it ------------------------------------------------------


@dataclass(frozen=True)
class Model:
    bundle: Path
    manifest: Manifest
    work: Path  # bodies, configs

    @property
    def title(self) -> str:
        s = self.manifest.input
        return f"{self.manifest.name}:{self.manifest.version} ({s.channels}x{s.height}x{s.width})"

    @property
    def encoder(self) -> Path:
        return self.bundle / "encoder.onnx"

    @property
    def mode(self) -> str:
        return self.manifest.input.colour_mode


Latents = tuple[list[float], list[float]]  # mean, log_var of one image


@dataclass(frozen=True)
class Wire:
    """How one peer takes a single PNG and gives back its latents."""

    label: str
    path: str
    content_type: str
    body: Callable[[bytes], bytes]
    parse: Callable[[Any], Latents]
    headers: Callable[[bytes], dict[str, str]] = lambda _: {}


def _plain(doc: Any) -> Latents:
    return doc["mean"], doc["log_var"]


def _vaeserve_answer(doc: Any) -> Latents:
    (row,) = doc["results"]
    return row["mean"], row["log_var"]


def _v2_answer(doc: Any) -> Latents:
    outputs = {o["name"]: o["data"] for o in doc["outputs"]}
    return outputs["mean"], outputs["log_var"]


def _triton_body(png: bytes) -> bytes:
    """A binary-tensor-extension request: JSON header, then the BYTES tensor (length-prefixed)."""
    return _triton_header(png) + struct.pack("<I", len(png)) + png


def _triton_header(png: bytes) -> bytes:
    outputs = [{"name": name, "parameters": {"binary_data": False}} for name in ("mean", "log_var")]
    size = 4 + len(png)
    inputs = [{"name": "image", "shape": [1, 1], "datatype": "BYTES", "parameters": {"binary_data_size": size}}]
    return json.dumps({"inputs": inputs, "outputs": outputs}).encode()


def _mlserver_body(png: bytes) -> bytes:
    data = [base64.b64encode(png).decode()]
    return json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": data}]}).encode()


def _litserve_body(png: bytes) -> bytes:
    return json.dumps({"image": base64.b64encode(png).decode()}).encode()


def _vaeserve_json(png: bytes) -> bytes:
    return json.dumps({"images": [base64.b64encode(png).decode()]}).encode()


WIRES: dict[str, list[Wire]] = {
    "floor": [Wire("raw PNG", "/encode", "image/png", lambda png: png, _plain)],
    "naive": [Wire("multipart PNG", "/encode", f"multipart/form-data; boundary={BOUNDARY}", multipart, _plain)],
    "pytriton": [
        Wire(
            "binary BYTES tensor",
            "/v2/models/encoder/infer",
            "application/octet-stream",
            _triton_body,
            _v2_answer,
            lambda png: {"Inference-Header-Content-Length": str(len(_triton_header(png)))},
        )
    ],
    "mlserver": [Wire("JSON base64", "/v2/models/encoder/infer", "application/json", _mlserver_body, _v2_answer)],
    "litserve": [Wire("JSON base64", "/predict", "application/json", _litserve_body, _plain)],
    "vaeserve": [
        Wire("raw PNG", "/v1/encode", "image/png", lambda png: png, _vaeserve_answer),
        Wire("JSON base64", "/v1/encode", "application/json", _vaeserve_json, _vaeserve_answer),
    ],
    "vaeserve2": [Wire("raw PNG", "/v1/encode", "image/png", lambda png: png, _vaeserve_answer)],
}
TITLES = {
    "floor": "floor: FastAPI + uvicorn, reads the body, answers a constant",
    "naive": "naive: FastAPI + ONNX Runtime, one session.run per request",
    "pytriton": "PyTriton 0.7 (Triton's C++ HTTP front end, dynamic batching)",
    "mlserver": "MLServer 1.7 (adaptive batching)",
    "litserve": "LitServe 0.2 (batching, max wait 1 ms)",
    "vaeserve": "vaeserve (batching on)",
    "vaeserve2": "vaeserve, 2 workers (batching on)",
}


# -- the servers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    spec: ServerSpec
    batch_stats: Callable[[Live], tuple[float, float] | None]  # (calls, rows) so far; None: not known


def _unknown(_: Live) -> None:
    return None


def _counters(url: str, calls: str, rows: str, labels: dict[str, str]) -> Callable[[Live], tuple[float, float]]:
    """Read two samples (calls, rows) matching `labels` from a Prometheus page at `url` ("" = the server's)."""

    def read(live: Live) -> tuple[float, float]:
        text = httpx.get(url or live.url + "/metrics", timeout=10.0).text
        sums = {calls: 0.0, rows: 0.0}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in sums and labels.items() <= sample.labels.items():
                    sums[sample.name] += sample.value
        return sums[calls], sums[rows]

    return read


def launch(peer: str, model: Model, python: Path) -> Launch:
    """The command line of `peer` serving `model` with `python`, and how to read its batch counters."""
    if peer == "floor":
        argv = [str(python), "-m", "uvicorn", "bench.peer_servers.floor:app"]
        argv += ["--host", "127.0.0.1", "--port", PORT, "--no-access-log"]
        env = without_settings(FLOOR_LATENT=str(model.manifest.latent_dim))
        return Launch(ServerSpec("floor", argv, env, "/healthz"), _unknown)
    if peer == "naive":
        spec = naive(model.bundle)
        return Launch(ServerSpec("naive", spec.argv, {**spec.env, "NAIVE_ENGINE": "onnxruntime"}, "/healthz"), _unknown)
    if peer == "vaeserve2":  # one process per core; /metrics answers for one of them only: no batch sizes
        spec = vaeserve(model.bundle, model.manifest.name, batching=True)
        return Launch(ServerSpec(peer, spec.argv, {**spec.env, "VAESERVE_WORKERS": "2"}, spec.ready_path), _unknown)
    if peer == "vaeserve":
        labels = {"model": f"{model.manifest.name}:{model.manifest.version}", "operation": "encode"}
        stats = _counters("", "vaeserve_batch_size_count", "vaeserve_batch_size_sum", labels)
        return Launch(vaeserve(model.bundle, model.manifest.name, batching=True), stats)
    args = ["--encoder", str(model.encoder), "--mode", model.mode, "--port", PORT]
    env = without_settings(PYTHONPATH=str(ROOT))  # bench.peer_servers, without installing this project
    metrics = free_port()
    if peer == "pytriton":
        argv = [str(python), "-m", "bench.peer_servers.pytriton_server", *args, "--ports", str(free_port())]
        argv.append(str(metrics))
        # Prometheus' parser names counter samples <family>_total
        names = ("nv_inference_exec_count_total", "nv_inference_count_total")
        stats = _counters(f"http://127.0.0.1:{metrics}/metrics", *names, {"model": "encoder"})
        return Launch(ServerSpec(peer, argv, env, "/v2/models/encoder/ready"), stats)
    if peer == "mlserver":
        folder = mlserver_folder(model, grpc_port=free_port(), metrics_port=metrics)
        argv = [str(python.parent / "mlserver"), "start", str(folder)]
        stats = _counters(f"http://127.0.0.1:{metrics}/metrics", "peer_batches_total", "peer_batch_rows_total", {})
        return Launch(ServerSpec(peer, argv, {**env, "MLSERVER_HTTP_PORT": PORT}, "/v2/models/encoder/ready"), stats)
    if peer == "litserve":
        argv = [str(python), "-m", "bench.peer_servers.litserve_server", *args]
        return Launch(ServerSpec(peer, argv, env, "/health"), _unknown)
    raise ValueError(f"unknown peer {peer!r}")


def mlserver_folder(model: Model, *, grpc_port: int, metrics_port: int) -> Path:
    """settings.json and model-settings.json for `mlserver start`; the HTTP port comes from the environment."""
    folder = model.work / "mlserver"
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"host": "127.0.0.1", "grpc_port": grpc_port, "metrics_port": metrics_port, "parallel_workers": 0}
    model_settings = {
        "name": "encoder",
        "implementation": "bench.peer_servers.mlserver_runtime.EncoderRuntime",
        "max_batch_size": CONCURRENCY,
        "max_batch_time": 0.001,
        "parameters": {"uri": str(model.encoder), "extra": {"mode": model.mode}},
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "model-settings.json").write_text(json.dumps(model_settings))
    return folder


# -- checks and load -----------------------------------------------------------------------


@dataclass
class PeerRun:
    """One peer on one wire: what happened, and the numbers when it ran."""

    peer: str
    wire: str
    status: str  # "ok", or the stage that failed: "install", "start", "check", "load"
    detail: str = ""
    round: int = 0
    run: Run | None = None
    mean_batch: float | None = None
    max_abs_diff: float | None = None
    ready_s: float | None = None

    @property
    def per_s(self) -> float | None:
        return None if self.run is None else self.run.per_s

    def p99_over_p50(self) -> float | None:
        return None if self.run is None else ratio(self.run.ms(99), self.run.ms(50))

    def to_json(self) -> dict[str, Any]:
        doc = {k: v for k, v in asdict(self).items() if k != "run"}
        return doc | {"run": None if self.run is None else self.run.to_json(), "p99_over_p50": self.p99_over_p50()}


def pngs(model: Model, n: int) -> list[bytes]:
    """n random PNGs of the model's size and mode: [0] is the load body, the rest are checked."""
    rng = np.random.default_rng(0)
    return [random_png(model.manifest.input, rng) for _ in range(n)]


def reference(model: Model, images: list[bytes]) -> list[Latents]:
    """ONNX Runtime run directly on the pixels model/preprocess.py makes of each PNG."""
    session = onnxruntime.InferenceSession(str(model.encoder), providers=["CPUExecutionProvider"])
    x = np.stack([decode_image(png, model.manifest.input) for png in images])
    mean, log_var = session.run(None, {"image": x})
    return [(m.tolist(), v.tolist()) for m, v in zip(mean, log_var, strict=True)]


def check(live: Live, wire: Wire, images: list[bytes], expected: list[Latents], exact: bool) -> float | None:
    """Send every image at once; each answer must match ONNX Runtime. Returns the max abs
    difference, or None for a server that answers a constant (`exact` false: sizes only)."""

    def ask(client: httpx.Client, png: bytes) -> Latents:
        headers = {"content-type": wire.content_type, **wire.headers(png)}
        response = client.post(live.url + wire.path, content=wire.body(png), headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"{wire.path} answered {response.status_code}: {response.text[:300]}")
        return wire.parse(response.json())

    with httpx.Client(timeout=60.0) as client, ThreadPoolExecutor(len(images)) as pool:
        answers = list(pool.map(lambda png: ask(client, png), images))
    if not exact:  # the floor answers a constant of the right shape
        sizes = {(len(m), len(v)) for m, v in answers}
        want = {(len(m), len(v)) for m, v in expected}
        if sizes != want:
            raise RuntimeError(f"answers hold latents of sizes {sizes}, expected {want}")
        return None
    worst = 0.0
    for (mean, log_var), (want_mean, want_log_var) in zip(answers, expected, strict=True):
        diff = max(np.abs(np.subtract(mean, want_mean)).max(), np.abs(np.subtract(log_var, want_log_var)).max())
        worst = max(worst, float(diff))
    if not worst <= CHECK_TOLERANCE:
        raise RuntimeError(f"answers differ from ONNX Runtime run directly by up to {worst:.3g}")
    return worst


def load(peer: str, live: Live, wire: Wire, png: bytes, folder: Path, seconds: float, pin: bool) -> Run:
    body_path = folder / f"{peer}-{wire.label.replace(' ', '-')}.body"
    body_path.write_bytes(wire.body(png))
    body = Body(body_path, wire.content_type, 1)
    text = hey(live.url + wire.path, CONCURRENCY, seconds, body, wire.headers(png), pin=pin)
    total, statuses, errors, latency = parse_hey(text)
    return Run(peer, "encode", wire.label, CONCURRENCY, 1, total, statuses, errors, latency, rss_kib(live.pid))


def mean_batch(before: tuple[float, float] | None, after: tuple[float, float] | None) -> float | None:
    if before is None or after is None or after[0] <= before[0]:
        return None
    return (after[1] - before[1]) / (after[0] - before[0])


@dataclass
class Up:
    """A peer's server, started and checked: what its load points need."""

    launched: Launch
    live: Live
    max_abs_diff: dict[str, float | None]  # per wire


def start_peer(stack: ExitStack, peer: str, model: Model, install: Install, pin: bool) -> Up | list[PeerRun]:
    """Start `peer` on `model` (it stops when `stack` closes) and check every wire's answers;
    a failure is a result: one PeerRun per wire saying where it failed."""
    if install.python is None:
        return [PeerRun(peer, wire.label, "install", install.error) for wire in WIRES[peer]]
    images = pngs(model, CHECK_IMAGES + 1)
    expected = reference(model, images)
    exact = peer != "floor"  # the floor answers a constant
    stage, diffs = "start", {}
    try:
        launched = launch(peer, model, install.python)
        live = stack.enter_context(running(launched.spec, pin=pin))
        stage = "check"
        for wire in WIRES[peer]:
            diffs[wire.label] = check(live, wire, images[1:], expected[1:], exact)
            check(live, wire, images[:1], expected[:1], exact)  # the load body's own answer
    except Exception as exc:  # a peer that cannot start or answer is reported, and the run goes on
        detail = f"{type(exc).__name__}: {exc}"[-2000:]
        print(f"  {peer:9} FAILED ({stage}): {(detail.splitlines() or [''])[0][:200]}", flush=True)
        return [PeerRun(peer, wire.label, stage, detail) for wire in WIRES[peer]]
    print(f"  {peer:9} up in {live.ready_s:.1f} s, answers checked", flush=True)
    return Up(launched, live, diffs)


def load_peer(peer: str, up: Up, model: Model, seconds: float, round_: int, pin: bool) -> list[PeerRun]:
    """One load point per wire of a started peer."""
    results = []
    for wire in WIRES[peer]:
        result = PeerRun(peer, wire.label, "load", round=round_, max_abs_diff=up.max_abs_diff[wire.label])
        result.ready_s = up.live.ready_s
        try:
            before = up.launched.batch_stats(up.live)
            result.run = load(peer, up.live, wire, pngs(model, 1)[0], model.work, seconds, pin)
            result.mean_batch = 1.0 if peer == "naive" else mean_batch(before, up.launched.batch_stats(up.live))
            failed = result.run.failed
            result.status, result.detail = ("ok", "") if not failed else ("load", f"{failed} not 2xx or errors")
        except Exception as exc:
            result.detail = f"{type(exc).__name__}: {exc}"[-2000:]
        rate = f"{result.per_s:9.1f} req/s" if result.per_s is not None else ""
        batch = f", mean batch {result.mean_batch:.1f}" if result.mean_batch else ""
        failure = "" if result.status == "ok" else f"  FAILED: {(result.detail.splitlines() or [''])[0][:200]}"
        print(f"  round {round_ + 1}  {peer:9} {wire.label:20} {rate}{batch}{failure}", flush=True)
        results.append(result)
    return results


def bench_model(
    result: ModelResult, peers: list[str], installs: dict[str, Install], seconds: float, pin: bool = True
) -> None:
    """Every peer up at once (each idle while another is loaded), then `rounds` rounds of one
    load point per peer and wire, the order turned by one peer each round: slow drifts of the
    machine's load fall on every peer alike, and ratios are taken within a round. In-process
    ONNX Runtime is measured before each round, for that round's one-core bound."""
    model, results = result.model, result.runs
    with ExitStack() as stack:
        up: dict[str, Up] = {}
        for peer in peers:
            started = start_peer(stack, peer, model, installs[peer], pin)
            if isinstance(started, Up):
                up[peer] = started
            else:
                results += started
        for round_ in range(result.rounds):
            result.ort_rates.append(ort_images_per_s(model.bundle, ORT_BATCH, min(seconds, 3.0)))
            print(f"  round {round_ + 1}  in-process ONNX Runtime {result.ort_rates[-1]:,.0f} images/s at batch "
                  f"{ORT_BATCH}", flush=True)  # fmt: skip
            order = peers[round_ % len(peers) :] + peers[: round_ % len(peers)]
            for peer in order:
                if peer in up:
                    runs = load_peer(peer, up[peer], model, seconds, round_, pin)
                    results += runs
                    if any(r.run is None for r in runs):  # it broke: no more rounds for it
                        del up[peer]


# -- installs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Install:
    python: Path | None  # None: it could not be installed
    error: str = ""


def install(peers: list[str], venvs: Path) -> dict[str, Install]:
    """Each peer's python: this one, or that of its own venv, made once with PEERS' pins."""
    installs = {}
    for peer in peers:
        if peer not in PEERS:
            installs[peer] = Install(Path(sys.executable))
            continue
        base = SYSTEM_PYTHON if peer == "pytriton" and Path(SYSTEM_PYTHON).exists() else sys.executable
        print(f"  {peer}: {venvs / peer} with {base}: {' '.join(PEERS[peer])}", flush=True)
        started = time.perf_counter()
        try:
            installs[peer] = Install(ensure_venv(venvs / peer, PEERS[peer], base_python=base))
            print(f"  {peer}: ready in {time.perf_counter() - started:.0f} s", flush=True)
        except VenvError as exc:
            installs[peer] = Install(None, f"install failed: {exc}")
            print(f"  {peer}: INSTALL FAILED: {str(exc).splitlines()[0]}", flush=True)
    return installs


# -- the report ----------------------------------------------------------------------------


@dataclass
class ModelResult:
    model: Model
    rounds: int
    ort_rates: list[float] = field(default_factory=list)  # in-process ORT images/s, measured before each round
    runs: list[PeerRun] = field(default_factory=list)

    @property
    def ort_images_per_s(self) -> float:
        return median(self.ort_rates) if self.ort_rates else 0.0

    def get(self, peer: str, wire: str | None = None, round_: int | None = None) -> list[PeerRun]:
        """The runs of `peer` (on `wire`; in `round_`) that have numbers."""
        return [r for r in self.runs if r.peer == peer and (wire is None or r.wire == wire) and r.run is not None
                and (round_ is None or r.round == round_)]  # fmt: skip

    def per_s(self, peer: str, wire: str | None = None, round_: int | None = None) -> float | None:
        """Requests/s of `peer`'s first wire (or `wire`): the median over rounds, or in `round_`."""
        wire = wire or WIRES[peer][0].label
        rates = [r.per_s for r in self.get(peer, wire, round_) if r.per_s is not None]
        return median(rates) if rates else None

    def bound(self, round_: int | None = None) -> float | None:
        """Requests/s one core could serve: 1 / (floor latency + ORT compute per image at batch 64)."""
        floor = self.per_s("floor", round_=round_)
        ort = self.ort_images_per_s if round_ is None else self.ort_rates[round_]
        if floor is None or not ort:
            return None
        return 1.0 / (1.0 / floor + 1.0 / ort)

    def ratio(self, ours: tuple[str, str], theirs: str) -> tuple[float | None, list[float]]:
        """(median, every round's) of vaeserve's req/s on wire `ours` over `theirs`' in the same
        round; `theirs` "bound" is the one-core bound of that round."""
        each = []
        for round_ in range(self.rounds):
            other = self.bound(round_) if theirs == "bound" else self.per_s(theirs, round_=round_)
            value = ratio(self.per_s(*ours, round_=round_), other)
            if value is not None:
                each.append(value)
        return (median(each) if each else None), each

    def ratios(self) -> dict[str, float | None]:
        raw, b64 = ("vaeserve", "raw PNG"), ("vaeserve", "JSON base64")
        return {
            "vaeserve_over_pytriton": self.ratio(raw, "pytriton")[0],
            "vaeserve_over_mlserver": self.ratio(raw, "mlserver")[0],
            "vaeserve_over_naive": self.ratio(raw, "naive")[0],
            "vaeserve_over_one_core_bound": self.ratio(raw, "bound")[0],
            "vaeserve_json_over_pytriton": self.ratio(b64, "pytriton")[0],
            "vaeserve2_over_pytriton": self.ratio(("vaeserve2", "raw PNG"), "pytriton")[0],
            "vaeserve2_over_vaeserve": self.ratio(("vaeserve2", "raw PNG"), "vaeserve")[0],
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model.title,
            "bundle": repo_path(self.model.bundle),
            "encoder_sha256": self.model.manifest.files["encoder.onnx"].sha256,
            "in_process_ort_images_per_s_batch_64": self.ort_images_per_s,
            "in_process_ort_images_per_s_per_round": self.ort_rates,
            "rounds": self.rounds,
            "one_core_bound_req_per_s": self.bound(),
            "ratios": self.ratios(),
            "ratios_per_round": {
                "vaeserve_over_pytriton": self.ratio(("vaeserve", "raw PNG"), "pytriton")[1],
                "vaeserve_over_one_core_bound": self.ratio(("vaeserve", "raw PNG"), "bound")[1],
            },
            "runs": [r.to_json() for r in self.runs],
        }


def _spread(values: list[float]) -> str:
    return "" if len(values) < 2 else f" ({min(values):.2f}-{max(values):.2f})"


def report(models: list[ModelResult]) -> list[str]:
    rounds = models[0].rounds
    head = "| c=64 | " + " | ".join(m.model.title for m in models) + " |"
    lines = [
        f"Requests/s (2xx; the median of {rounds} rounds), p99/p50, mean batch the server ran:",
        "",
        head,
        "|---|" + "--:|" * len(models),
    ]
    keys = list(dict.fromkeys((r.peer, r.wire) for m in models for r in m.runs))
    for peer, wire in keys:
        cells = []
        for m in models:
            ran = m.get(peer, wire)
            if not ran:
                broken = next((x for x in m.runs if x.peer == peer and x.wire == wire), None)
                cells.append("n/a" if broken is None else f"failed ({broken.status})")
                continue
            middle = sorted(ran, key=lambda r: r.per_s or 0.0)[(len(ran) - 1) // 2]  # the median run's other numbers
            batch = f", batch {middle.mean_batch:.1f}" if middle.mean_batch else ""
            cells.append(f"{m.per_s(peer, wire):,.0f} (p99/p50 {fmt(middle.p99_over_p50(), '.1f')}{batch})")
        lines.append(f"| {TITLES[peer]}, {wire} | " + " | ".join(cells) + " |")

    def ratio_cell(m: ModelResult, ours: str, theirs: str, server: str = "vaeserve") -> str:
        value, each = m.ratio((server, ours), theirs)
        return fmt(value, ".2f", "x") + _spread(each)

    rows: dict[str, Callable[[ModelResult], str]] = {
        f"in-process ONNX Runtime, batch {ORT_BATCH}, one thread, images/s": lambda m: fmt(m.ort_images_per_s),
        "one-core bound 1/(floor latency + ORT per image), req/s": lambda m: fmt(m.bound()),
        "vaeserve / PyTriton": lambda m: ratio_cell(m, "raw PNG", "pytriton"),
        "vaeserve / MLServer": lambda m: ratio_cell(m, "raw PNG", "mlserver"),
        "vaeserve / naive": lambda m: ratio_cell(m, "raw PNG", "naive"),
        "vaeserve / one-core bound": lambda m: ratio_cell(m, "raw PNG", "bound"),
        "vaeserve JSON base64 / PyTriton": lambda m: ratio_cell(m, "JSON base64", "pytriton"),
        "vaeserve, 2 workers / PyTriton": lambda m: ratio_cell(m, "raw PNG", "pytriton", "vaeserve2"),
        "vaeserve, 2 workers / 1 worker": lambda m: ratio_cell(m, "raw PNG", "vaeserve", "vaeserve2"),
    }
    lines += ["", f"Ratios within each round: the median of {rounds} (lowest-highest)", ""]
    lines += ["| | " + " | ".join(m.model.title for m in models) + " |", "|---|" + "--:|" * len(models)]
    lines += [f"| {label} | " + " | ".join(cell(m) for m in models) + " |" for label, cell in rows.items()]
    if any(r.status != "ok" for m in models for r in m.runs):
        lines += ["", "Failed:"]
        lines += [f"- {m.model.title}, {r.peer} ({r.wire}, round {r.round + 1}): {r.status}: {r.detail}"
                  for m in models for r in m.runs if r.status != "ok"]  # fmt: skip
    return lines


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n")[0])
    p.add_argument("--repository", type=Path, default=ROOT / "model" / "zoo", help="holds <model>/<version>/")
    p.add_argument("--model", default="mnist-vae", help="the shipped model's folder in --repository (highest version)")
    p.add_argument("--models", default="shipped,big",
                   help="comma-separated encoders: shipped (--model), big (bench/make_big_model.py), fundus (the "
                        "shipped colour model), or a bundle's folder (e.g. an int8 one from training.quantize); "
                        "default shipped,big")  # fmt: skip
    p.add_argument("--peers", default=",".join(ALL_PEERS), help=f"comma-separated, from {', '.join(ALL_PEERS)}")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load per point (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="load points per peer, peers in turn (default 3)")
    p.add_argument("--cores", choices=["pinned", "shared"], default="pinned",
                   help="pinned: each server on core 0, hey on core 1 (default); shared: nothing pinned, every "
                        "server and hey on all cores (compare vaeserve2, one worker per core)")  # fmt: skip
    p.add_argument("--venvs", type=Path, default=ROOT / "runs" / "peer-venvs", help="the peers' virtual environments")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "peers.json", help="raw numbers (JSON)")
    args = p.parse_args(argv)
    args.peers = [x for x in args.peers.split(",") if x]
    args.models = [x for x in args.models.split(",") if x]
    if not args.peers or not args.models:
        p.error("--peers and --models each need at least one name")
    if unknown := [x for x in args.peers if x not in ALL_PEERS]:
        p.error(f"unknown peers {unknown}; known: {', '.join(ALL_PEERS)}")
    if unknown := [x for x in args.models if x not in MODEL_KEYS and not (Path(x) / "manifest.json").is_file()]:
        p.error(f"unknown models {unknown}: not one of {', '.join(MODEL_KEYS)}, nor a bundle's folder")
    if not 1 <= args.rounds <= 20:
        p.error("--rounds must be in [1, 20]")
    for folder in [Path(x) for x in args.models if x not in MODEL_KEYS]:  # checked now, not after the installs
        try:  # checksums, and graphs ONNX Runtime can load
            VAERuntime(load_bundle(folder), RuntimeOptions(intra_op_threads=1, inter_op_threads=1))
        except BundleError as exc:
            p.error(f"--models {folder}: {exc}")
    if not 0 < args.duration <= 600:
        p.error("--duration must be in (0, 600] seconds")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m bench.peers " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"$ {command}", flush=True)
    check_machine()
    started, at_start, clock = datetime.now(UTC), machine(), time.perf_counter()
    print("installing peers:", flush=True)
    installs = install(args.peers, args.venvs)
    installed_s = time.perf_counter() - clock
    if args.cores == "pinned":
        os.sched_setaffinity(0, {HEY_CORE})  # keep this process's polling off the servers' core
    results = []
    with tempfile.TemporaryDirectory(prefix="vaeserve-peers-") as tmp:
        work = Path(tmp)
        bundles = {
            "shipped": lambda: find_bundle(args.repository, args.model),
            "big": lambda: make_big_bundle(work),
            "fundus": lambda: find_bundle(args.repository, "fundus-vae"),
        }
        for i, key in enumerate(args.models):
            bundle = bundles[key]() if key in bundles else Path(key).resolve()
            model = Model(bundle, load_bundle(bundle).manifest, work / f"model-{i}")
            model.work.mkdir(parents=True, exist_ok=True)
            print(f"\n{model.title}, {repo_path(bundle)}:", flush=True)
            result = ModelResult(model, args.rounds)
            bench_model(result, args.peers, installs, args.duration, pin=args.cores == "pinned")
            results.append(result)
    lines = report(results)
    total_s = time.perf_counter() - clock
    doc = {
        "command": command,
        "started": started.isoformat(),
        "machine_at_start": at_start,
        "machine_at_end": machine(),
        "options": {
            "duration_s": args.duration,
            "rounds": args.rounds,
            "cores": args.cores,
            "concurrency": CONCURRENCY,
            "peers": args.peers,
            "pins": PEERS | {"ours": SAME_AS_OURS},
        },
        "seconds": {"installs": installed_s, "total": total_s},
        "models": [r.to_json() for r in results],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    load_avg = at_start["load_average"][0]
    print(f"\n$ {command}\n\nload average {load_avg:.2f} at start; {args.rounds} rounds of {args.duration:g} s "
          f"a point; {total_s:.0f} s in all ({installed_s:.0f} s of installs)\n")  # fmt: skip
    print("\n".join(lines))
    print(f"\nRaw numbers: {args.out}")
    return 0 if all(r.status == "ok" for m in results for r in m.runs) else 1


if __name__ == "__main__":
    sys.exit(main())

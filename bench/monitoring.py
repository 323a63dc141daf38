"""What model monitoring costs: the same server with monitoring on and off, loaded at the same
time on the same core; and the monitor's own calls, timed in-process.

    python -m bench.monitoring                                  # 9 rounds, 4 s a point: about 6 minutes
    python -m bench.monitoring --rounds 3 --seconds 2 --out /tmp/monitoring.json

End to end: three servers on the shipped model, batching on, one ONNX Runtime thread, all
pinned to core 0; "on" is the service as shipped (monitoring on, a drift report every
VAESERVE_DRIFT_INTERVAL_S = 60 s), "off" and "off2" have VAESERVE_MONITORING=false, off2 being
the control: off2/off shows how far two identical servers differ here. For each point one
`hey` run per server, on core 1, start together and last as long: the servers share one core
for the same seconds, so the load of the rest of the machine (shared with other work here)
hits them alike, and the ratio of two throughputs is the ratio of their costs per request.
The rounds are split in three blocks whose servers start in rotated orders (on, off, off2;
off, off2, on; off2, on, off), since the order servers start in sways their share of the core
here.

Points, one real digit (examples/digit.png) per request at concurrency 16 on each server:
POST /v1/score at the calibration's K = 64, at K = 1 (the cheapest score, where monitoring's
share is largest), and POST /v1/encode. Reported per point over all rounds: answers per
second of each (total answers / total seconds, so the drift reports that fell in the run
count), and each server's CPU time per answer (user + system, all its threads, from /proc).
Every answer must be a 200, or the run fails.

In-process: the monitor's calls per request (observe_score, observe_encode, one image), one
drift report of a full window of 500 (model/drift.py), whose share of a core at the default
interval is its time / 60 s, and what app/tracing.py costs a request with tracing off.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import PORT, ROOT, Live, cpu_seconds, serve, without_settings
from bench.load import SERVER_CORE, Body, hey, parse_hey

POINTS = (("/v1/score", "K=64"), ("/v1/score?importance_samples=1", "K=1"), ("/v1/encode", ""))
CONCURRENCY = 16
SIDES = ("on", "off", "off2")


def load_all(live: dict[str, Live], path: str, body: Body, seconds: float) -> dict[str, tuple[int, float, float]]:
    """hey on each server at once: side -> (2xx answers, seconds, server CPU seconds); any other answer raises."""
    before = {side: cpu_seconds(server.pid) for side, server in live.items()}
    with ThreadPoolExecutor(len(live)) as pool:
        runs = {side: pool.submit(hey, server.url + path, CONCURRENCY, seconds, body) for side, server in live.items()}
        texts = {side: run.result() for side, run in runs.items()}
    out = {}
    for side, text in texts.items():
        total, statuses, errors, _ = parse_hey(text)
        if errors or any(not 200 <= code < 300 for code in statuses):
            raise RuntimeError(f"{side} {path}: answers {statuses}, errors {errors}")
        out[side] = (sum(statuses.values()), total, cpu_seconds(live[side].pid) - before[side])
    return out


def end_to_end(rounds: int, seconds: float) -> dict[str, Any]:
    argv_app = ["taskset", "-c", str(SERVER_CORE), sys.executable, "-m", "app", "--port", PORT,
                "--log-level", "warning"]  # fmt: skip
    base = without_settings(VAESERVE_ORT_INTRA_OP_THREADS="1", VAESERVE_WORKERS="1", VAESERVE_LOG_FORMAT="text")
    monitoring = {"on": "true", "off": "false", "off2": "false"}
    raw: dict[str, list[tuple[int, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        body = Body(Path(tmp) / "digit.png", "image/png", 1)
        body.path.write_bytes((ROOT / "examples" / "digit.png").read_bytes())
        for block in range(len(SIDES)):
            order = SIDES[block:] + SIDES[:block]
            with ExitStack() as stack:
                live = {side: stack.enter_context(serve(argv_app, env={**base, "VAESERVE_MONITORING": monitoring[side]},
                                                        timeout_s=120)) for side in order}  # fmt: skip
                for path, _ in POINTS:
                    load_all(live, path, body, 1.0)  # warm up
                for round_ in range(rounds // len(SIDES)):
                    for path, _ in POINTS:
                        result = load_all(live, path, body, seconds)
                        for side, numbers in result.items():
                            raw.setdefault(f"{side} {path}", []).append(numbers)
                        rates = ", ".join(f"{side} {n / t:.1f}" for side, (n, t, _) in result.items())
                        print(f"block {block + 1} round {round_ + 1} {path}: {rates} req/s", flush=True)
    summary = {}
    for path, _ in POINTS:
        answers = {side: sum(n for n, _, _ in raw[f"{side} {path}"]) for side in SIDES}
        rate = {side: answers[side] / sum(t for _, t, _ in raw[f"{side} {path}"]) for side in SIDES}
        cpu = {side: sum(c for _, _, c in raw[f"{side} {path}"]) / answers[side] for side in SIDES}
        summary[path] = {"req_s": rate, "cpu_s_per_request": cpu, "throughput_on_off": rate["on"] / rate["off"],
                         "throughput_off2_off": rate["off2"] / rate["off"], "cpu_on_off": cpu["on"] / cpu["off"],
                         "cpu_off2_off": cpu["off2"] / cpu["off"]}  # fmt: skip
    return {"raw": raw, "summary": summary}


def in_process(repeats: int = 2000) -> dict[str, float]:
    """Seconds per call of the monitor's reports (one image) and of one drift report of 500 latents."""
    from app.monitoring.monitor import ModelMonitor, MonitorConfig
    from model.bundle import load_bundle
    from model.decision import decide
    from model.runtime import RuntimeOptions, VAERuntime
    from tests.helpers import real_digits

    runtime = VAERuntime(load_bundle(ROOT / "model" / "zoo" / "mnist-vae" / "1"), RuntimeOptions(intra_op_threads=1))
    digits, _ = real_digits(500, seed=3)
    images = (digits[:, None] / 255.0).astype(np.float32)
    one = images[:1]
    scores = runtime.score(one, 1, 0)
    decision = decide(runtime.manifest.calibration, scores.scores)
    monitor = ModelMonitor(runtime.manifest, MonitorConfig(anomaly_rate_window=500, drift_window=500))

    def timed(call: Any) -> float:
        started = time.perf_counter()
        for _ in range(repeats):
            call()
        return (time.perf_counter() - started) / repeats

    score_s = statistics.median(timed(lambda: monitor.observe_score(one, scores, decision)) for _ in range(5))
    encode_s = statistics.median(timed(lambda: monitor.observe_encode(one, scores.mean)) for _ in range(5))
    monitor.observe_encode(images, runtime.encode(images)[0])  # a full window of real latents
    reports = []
    for i in range(5):
        monitor.observe_encode(images[i : i + 1], runtime.encode(images[i : i + 1])[0])  # a new latent: report again
        started = time.perf_counter()
        monitor.update_drift()
        reports.append(time.perf_counter() - started)
    return {"observe_score_s": score_s, "observe_encode_s": encode_s, "drift_report_s": statistics.median(reports),
            "tracing_off_s": statistics.median(timed(_tracing_off_request) for _ in range(5))}  # fmt: skip


def _tracing_off_request() -> None:
    """What one batched request asks of app/tracing.py with tracing off: the parse decorator's span,
    its queue span, the batch's check, the model call's."""
    from app import tracing

    with tracing.span("vaeserve.parse"):
        pass
    queue = tracing.start_span("vaeserve.queue", {"vaeserve.model": "mnist-vae:1"})
    if queue.is_recording():
        raise AssertionError("tracing is on")
    queue.end()
    if tracing.active():
        raise AssertionError("tracing is on")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.monitoring", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=9, help="a multiple of 3: a third with each start order")
    p.add_argument("--seconds", type=float, default=4.0, help="per pair of hey runs")
    p.add_argument("--out", type=Path, help="raw numbers (JSON)")
    args = p.parse_args(argv)
    calls = in_process()
    print(f"in-process: observe_score {calls['observe_score_s'] * 1e6:.1f} µs, observe_encode "
          f"{calls['observe_encode_s'] * 1e6:.1f} µs a one-image request; a drift report of 500 latents "
          f"{calls['drift_report_s'] * 1e3:.0f} ms, {calls['drift_report_s'] / 60 * 100:.2f} % of a core every 60 s; "
          f"tracing off {calls['tracing_off_s'] * 1e6:.2f} µs a request", flush=True)  # fmt: skip
    measured = end_to_end(args.rounds, args.seconds)
    print(f"\n{args.rounds} rounds of {args.seconds:g} s, c={CONCURRENCY} on each server, all on one core\n")
    print("| request | req/s off | on | on/off | control off2/off | CPU ms/request off | on | on/off | off2/off |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (path, name), s in zip(POINTS, measured["summary"].values(), strict=True):
        label = f"POST {path.split('?')[0]}" + (f" ({name})" if name else "")
        cpu = s["cpu_s_per_request"]
        print(f"| {label} | {s['req_s']['off']:.1f} | {s['req_s']['on']:.1f} | {s['throughput_on_off']:.3f} | "
              f"{s['throughput_off2_off']:.3f} | {cpu['off'] * 1e3:.3f} | {cpu['on'] * 1e3:.3f} | "
              f"{s['cpu_on_off']:.3f} | {s['cpu_off2_off']:.3f} |")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"rounds": args.rounds, "seconds": args.seconds, "concurrency": CONCURRENCY,
                                        "in_process": calls, **measured}, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

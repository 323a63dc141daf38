"""A/B: this checkout's vaeserve against another git revision's, under the same load, interleaved.

    python -m bench.ab --base 3a092e7                       # 3 rounds, c=16 and 64, 5 s a point
    python -m bench.ab --base main~3 --rounds 5 --seconds 10 --out bench/results/ab.json
    python -m bench.ab --base HEAD --env-a VAESERVE_HOT_PATHS=false   # one setting, same code

The base revision is checked out into a temporary git worktree; each server serves its own
tree's shipped model, with batching on and one ONNX Runtime thread, logging as in production
(JSON lines at INFO, one access line per request, to a file), pinned to core 0, with `hey` on
core 1 (bench/load.py's set-up). Rounds alternate A and B so that drift in the machine's load
hits both alike; the table gives each side's median req/s per request kind and concurrency,
B/A, and the mean encode batch each side ran (vaeserve_batch_size). Every answer must be a
200, or the run fails.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import PORT, ROOT, serve, without_settings
from bench.load import SERVER_CORE, Body, make_bodies, measure_rate
from model.bundle import load_bundle

MODEL = ROOT / "model" / "zoo" / "mnist-vae" / "1"


@contextmanager
def checkout(revision: str) -> Iterator[Path]:
    """`revision` in a temporary detached worktree, removed at the end."""
    with tempfile.TemporaryDirectory(prefix="vaeserve-ab-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(path), revision], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        try:
            yield path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True)


def server_argv(tree: Path) -> list[str]:
    """The tree's own server on the tree's own shipped model (a bundle may be newer than an old server reads)."""
    return ["taskset", "-c", str(SERVER_CORE), sys.executable, "-m", "app", "--repository", str(tree / "model" / "zoo"),
            "--port", PORT]  # fmt: skip


def batch_totals(url: str) -> tuple[float, float]:
    """(batches, rows) the server's encode batcher has run so far."""
    sums = {"vaeserve_batch_size_count": 0.0, "vaeserve_batch_size_sum": 0.0}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name in sums and sample.labels.get("operation") == "encode":
                sums[sample.name] += sample.value
    return sums["vaeserve_batch_size_count"], sums["vaeserve_batch_size_sum"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the git revision to compare with (A); this checkout is B")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0, help="per hey run")
    p.add_argument("--env-a", action="append", default=[], metavar="NAME=VALUE", help="a setting for A only")
    p.add_argument("--env-b", action="append", default=[], metavar="NAME=VALUE", help="a setting for B only")
    p.add_argument("--only", help="only the points whose path contains this, e.g. /v1/score")
    p.add_argument("--out", type=Path, help="raw numbers (JSON)")
    args = p.parse_args(argv)
    spec = load_bundle(MODEL).manifest.input
    env = without_settings(VAESERVE_ORT_INTRA_OP_THREADS="1", VAESERVE_WORKERS="1", VAESERVE_LOG_FORMAT="json")
    side_env = {"A": dict(v.split("=", 1) for v in args.env_a), "B": dict(v.split("=", 1) for v in args.env_b)}
    load_before = os.getloadavg()
    rates: dict[str, list[float]] = {}
    batches: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, checkout(args.base) as base:
        bodies = make_bodies(spec, Path(tmp))
        json_body = Path(tmp) / "body.json"
        json_body.write_text(json.dumps({"images": [base64.b64encode(bodies["png"].data).decode()]}))
        bodies["json"] = Body(json_body, "application/json", 1)
        points = [("/v1/encode", "png", 16), ("/v1/encode", "png", 64), ("/v1/encode", "json", 64),
                  ("/v1/score", "png", 16), ("/v1/score", "png", 64)]  # fmt: skip
        points = [point for point in points if args.only is None or args.only in point[0]]
        for round_ in range(args.rounds):
            for side, cwd in (("A", base), ("B", ROOT)):
                with serve(
                    server_argv(cwd), env={**env, **side_env[side], "PYTHONPATH": str(cwd)}, cwd=cwd, timeout_s=120
                ) as live:
                    for path, kind, c in points:
                        before = batch_totals(live.url)
                        rate = measure_rate(live.url + path, bodies[kind], c, args.seconds)
                        (calls, rows), key = batch_totals(live.url), f"{side} {path} {kind} c={c}"
                        rates.setdefault(key, []).append(rate)
                        if path == "/v1/encode":
                            batches.setdefault(key, []).append((rows - before[1]) / max(calls - before[0], 1))
                        print(f"round {round_ + 1} {key}: {rate:.1f} req/s", flush=True)
    settings = "".join(
        f", {side} with {' '.join(f'{k}={v}' for k, v in e.items())}" for side, e in side_env.items() if e
    )
    print(
        f"\nA = {args.base}, B = this checkout{settings}; median req/s over {args.rounds} rounds (mean encode batch)\n"
    )
    load = {"before": load_before, "after": os.getloadavg()}
    print(f"load average (1, 5, 15 min): {load['before']} before, {load['after']} after\n")
    print("| request | A | B | B/A |\n|---|---|---|---|")
    summary = {}
    for path, kind, c in points:
        a, b = (statistics.median(rates[f"{side} {path} {kind} c={c}"]) for side in "AB")
        batch = {side: statistics.median(batches.get(f"{side} {path} {kind} c={c}", [0.0])) for side in "AB"}
        summary[f"{path} {kind} c={c}"] = {"A": a, "B": b, "B/A": b / a, "mean_batch": batch}
        shown = {side: f"{rate:.1f}" + (f" ({batch[side]:.1f})" if batch[side] else "")
                 for side, rate in (("A", a), ("B", b))}  # fmt: skip
        print(f"| {path} {kind} c={c} | {shown['A']} | {shown['B']} | {b / a:.2f} |")
    if args.out:
        doc = {"base": args.base, "env": side_env, "load_average": load, "rounds": args.rounds,
               "seconds": args.seconds, "raw": rates, "batches": batches, "median": summary}  # fmt: skip
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

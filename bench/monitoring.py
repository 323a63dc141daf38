"""What model monitoring costs in throughput: the same server with monitoring on and off, in one
run, interleaved.

    python -m bench.monitoring                                  # 5 rounds, 5 s a point: about 6 minutes
    python -m bench.monitoring --rounds 3 --seconds 3 --out /tmp/monitoring.json

Two servers on the shipped model, batching on, one ONNX Runtime thread, both pinned to core 0
with `hey` on core 1 (bench/load.py's set-up); only one is under load at a time. "on" is the
service as shipped (monitoring on, a drift report every VAESERVE_DRIFT_INTERVAL_S = 15 s);
"off" has VAESERVE_MONITORING=false. Each round measures every point on both servers, in
alternating order (on, off, then off, on), so drift in the machine's load hits both alike.
Points, one real digit (examples/digit.png) per request at concurrency 16: POST /v1/score at
the calibration's K = 64, at K = 1 (the cheapest score, where monitoring's share is largest),
and POST /v1/encode. The table gives the median req/s of each side and on/off; every answer
must be a 200, or the run fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench.harness import PORT, ROOT, serve, without_settings
from bench.load import SERVER_CORE, Body, measure_rate

POINTS = (("/v1/score", "K=64"), ("/v1/score?importance_samples=1", "K=1"), ("/v1/encode", ""))
CONCURRENCY = 16


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.monitoring", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=5.0, help="per hey run")
    p.add_argument("--out", type=Path, help="raw numbers (JSON)")
    args = p.parse_args(argv)
    argv_app = ["taskset", "-c", str(SERVER_CORE), sys.executable, "-m", "app", "--port", PORT,
                "--log-level", "warning"]  # fmt: skip
    base = without_settings(VAESERVE_ORT_INTRA_OP_THREADS="1", VAESERVE_WORKERS="1", VAESERVE_LOG_FORMAT="text")
    sides = {"on": {**base, "VAESERVE_MONITORING": "true"}, "off": {**base, "VAESERVE_MONITORING": "false"}}
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        body = Body(Path(tmp) / "digit.png", "image/png", 1)
        body.path.write_bytes((ROOT / "examples" / "digit.png").read_bytes())
        urls = {side: stack.enter_context(serve(argv_app, env=env, timeout_s=120)).url for side, env in sides.items()}
        for path, _ in POINTS:  # warm up both
            for url in urls.values():
                measure_rate(url + path, body, CONCURRENCY, 1.0)
        for round_ in range(args.rounds):
            order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
            for path, _ in POINTS:
                for side in order:
                    rate = measure_rate(urls[side] + path, body, CONCURRENCY, args.seconds)
                    rates.setdefault(f"{side} {path}", []).append(rate)
                    print(f"round {round_ + 1} {side:3} {path} c={CONCURRENCY}: {rate:.1f} req/s", flush=True)
    print(f"\nmedian req/s over {args.rounds} rounds, c={CONCURRENCY}\n")
    print("| request | monitoring off | monitoring on | on/off |\n|---|---|---|---|")
    summary = {}
    for path, name in POINTS:
        off, on = (statistics.median(rates[f"{side} {path}"]) for side in ("off", "on"))
        summary[path] = {"off": off, "on": on, "on/off": on / off}
        label = f"POST {path.split('?')[0]}" + (f" ({name})" if name else "")
        print(f"| {label} | {off:.1f} | {on:.1f} | {on / off:.3f} |")
    if args.out:
        args.out.write_text(json.dumps({"rounds": args.rounds, "seconds": args.seconds, "concurrency": CONCURRENCY,
                                        "raw": rates, "median": summary}, indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

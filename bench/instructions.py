"""Instructions per request: a count that a loaded machine does not move, for A/B decisions.

    python -m bench.instructions                               # this checkout, raw PNG encodes, c=1
    python -m bench.instructions --base main --requests 200    # main's server beside this checkout's
    python -m bench.instructions --kind npy --concurrency 4 --out /tmp/instructions.json

Each server (this checkout's, and with --base another revision's, in a temporary git
worktree, both at once) runs under `valgrind --tool=callgrind` on its own tree's shipped
model, one ONNX Runtime thread, batching on, the access log on at INFO as in production
(written to a temporary file). Once it is ready it gets --warm-up requests, its counters are
zeroed (`callgrind_control -z`), `hey` sends --requests more at --concurrency, and the
counters are dumped (`callgrind_control -d`). The report gives instructions (Ir) per request,
split by the object they ran in: ONNX Runtime's library, and the rest (Python, its
extensions, libc, the kernel interface), which is the per-request overhead this counts.

Under valgrind a server runs some 50x slower: start-up takes minutes, and an ONNX Runtime
call takes about a second, so at concurrency c the batches stay full (c rows) and a run of
200 single-image requests takes a few minutes. The counts do not depend on the machine's
load, only on the code path: the same revision gives the same count within ~0.5 %.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.ab import checkout
from bench.harness import PORT, ROOT, Live, serve, without_settings
from bench.load import BATCH, make_bodies
from model.bundle import load_bundle

MODEL = ROOT / "model" / "zoo" / "mnist-vae" / "1"
PATHS = {"png": "/v1/encode", "json": "/v1/encode", "npy": "/v1/encode", "score": "/v1/score"}
READY_TIMEOUT_S = 900.0


def count_by_object(dump: Path) -> Counter[str]:
    """Self cost (Ir) per object file, from a callgrind dump (name compression and calls= lines handled)."""
    names: dict[str, str] = {}
    costs: Counter[str] = Counter()
    current, skip_next = "?", False
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith(("ob=", "cob=")):  # both name objects; only ob= says where costs go
            ref, _, name = line.partition("=")[2].partition(" ")
            if name:
                names[ref] = name
            if line.startswith("ob="):
                current = names.get(ref, ref)
        elif line.startswith("calls="):
            skip_next = True  # the next cost line is the call's inclusive cost
        elif line[:1].isdigit() or line[:1] in "+-*":
            if skip_next:
                skip_next = False
                continue
            parts = line.split()
            costs[current] += int(parts[1]) if len(parts) > 1 else 0  # "position cost"; no cost is 0
    return costs


def measure(
    tree: Path, label: str, kind: str, requests: int, concurrency: int, warm_up: int, work: Path
) -> dict[str, Any]:
    """Instructions of `requests` requests to `tree`'s server, after `warm_up` ones."""
    bodies = make_bodies(load_bundle(MODEL).manifest.input, work / "bodies")
    body, content_type = bodies[kind].path, bodies[kind].content_type
    if kind == "json":
        body, content_type = work / "body.json", "application/json"
        body.write_text(json.dumps({"images": [base64.b64encode(bodies["png"].data).decode()]}))
    dump = work / f"callgrind.{label}"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}", sys.executable, "-m", "app",
            "--repository", str(tree / "model" / "zoo"), "--port", PORT]  # fmt: skip
    env = without_settings(VAESERVE_ORT_INTRA_OP_THREADS="1", VAESERVE_LOG_FORMAT="json", PYTHONPATH=str(tree))
    with serve(argv, env=env, cwd=tree, timeout_s=READY_TIMEOUT_S) as live:
        url = live.url + PATHS[kind]
        _hey(url, body, content_type, warm_up, concurrency)
        _control(live, "-z")
        _hey(url, body, content_type, requests, concurrency)
        _control(live, "-d")
    by_object = count_by_object(Path(f"{dump}.1"))
    total = sum(by_object.values())
    ort = sum(n for name, n in by_object.items() if "onnxruntime" in name)
    images = BATCH if kind == "npy" else 1
    return {
        "label": label,
        "kind": kind,
        "requests": requests,
        "concurrency": concurrency,
        "images_per_request": images,
        "ir_per_request": total / requests,
        "ir_per_request_onnxruntime": ort / requests,
        "ir_per_request_other": (total - ort) / requests,
        "top_objects": {name: n / requests for name, n in by_object.most_common(8)},
    }


def _hey(url: str, body: Path, content_type: str, n: int, concurrency: int) -> None:
    argv = ["hey", "-n", str(n), "-c", str(concurrency), "-t", "0", "-m", "POST", "-T", content_type, "-D", str(body)]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    if f"[200]\t{n} responses" not in out:
        raise RuntimeError(f"not every answer was a 200:\n{out}")


def _control(live: Live, flag: str) -> None:
    """callgrind_control on the valgrind process (the server's own PID: valgrind runs in place)."""
    subprocess.run(["callgrind_control", flag, str(live.pid)], check=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", help="also count this git revision's server (A); this checkout is B")
    p.add_argument("--head", help="count this revision as B instead of the checkout (which may then change meanwhile)")
    p.add_argument("--kind", choices=sorted(PATHS), default="png", help="the request: a raw PNG, JSON base64, "
                   f"{BATCH} images as .npy, or a PNG to /v1/score")  # fmt: skip
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--warm-up", type=int, default=20)
    p.add_argument("--out", type=Path, help="the counts (JSON)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vaeserve-ir-") as tmp, ThreadPoolExecutor(2) as pool:
        work = Path(tmp)
        with (
            checkout(args.base) if args.base else contextlib.nullcontext() as base,
            checkout(args.head) if args.head else contextlib.nullcontext(ROOT) as head,
        ):
            trees = {"B": head} if base is None else {"A": base, "B": head}
            run = (args.kind, args.requests, args.concurrency, args.warm_up)
            jobs = {label: pool.submit(measure, tree, label, *run, work / label) for label, tree in trees.items()}
            results = {label: job.result() for label, job in jobs.items()}
    print(f"\n{args.kind}, {args.requests} requests at c={args.concurrency}; instructions per request (millions)\n")
    print("| server | all | ONNX Runtime | the rest |\n|---|--:|--:|--:|")
    for label, r in results.items():
        name = f"{label} ({args.base})" if label == "A" else f"{label} ({args.head or 'this checkout'})"
        print(f"| {name} | {r['ir_per_request'] / 1e6:.3f} | {r['ir_per_request_onnxruntime'] / 1e6:.3f} | "
              f"{r['ir_per_request_other'] / 1e6:.3f} |")  # fmt: skip
    if "A" in results:
        a, b = results["A"]["ir_per_request_other"], results["B"]["ir_per_request_other"]
        print(f"\nthe rest, B/A: {b / a:.3f}")
    if args.out:
        args.out.write_text(json.dumps({"base": args.base, "head": args.head, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

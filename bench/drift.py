"""What a latent drift report costs, against what filling its window cost: one run, one core.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python -m bench.drift --out bench/results/drift.json

For the shipped model (D = 16, a 500-row reference in its manifest) and windows of 100, 250
and 500 posterior means, the time of `model.drift.drift_report` at 200, 500 and 1000
permutations (the median of `--repeats` runs), and as a ratio to ONNX Runtime encoding the
same number of images (one thread): the work the service did to fill that window.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from model.bundle import load_bundle
from model.drift import drift_report
from model.runtime import RuntimeOptions, VAERuntime

DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "model" / "zoo" / "mnist-vae" / "1"


def _median_ms(run: Callable[[], object], repeats: int) -> float:
    run()  # warm caches and BLAS
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000.0)


def measure(bundle: Path, repeats: int) -> dict[str, Any]:
    runtime = VAERuntime(load_bundle(bundle), RuntimeOptions(intra_op_threads=1))
    stats = runtime.manifest.latents
    if stats is None:
        raise SystemExit(f"{bundle} keeps no training latents")
    spec = runtime.manifest.input
    rng = np.random.default_rng(0)
    rows = []
    for window in (100, 250, 500):
        images = rng.random((window, spec.channels, spec.height, spec.width), dtype=np.float32)
        latents = runtime.encode(images)[0]
        encode_ms = _median_ms(partial(runtime.encode, images), repeats)
        for permutations in (200, 500, 1000):
            ms = _median_ms(partial(drift_report, stats, latents, permutations=permutations), repeats)
            rows.append({"window": window, "reference": len(stats.reference), "latent_dim": len(stats.mean),
                         "permutations": permutations, "drift_ms": round(ms, 2), "encode_ms": round(encode_ms, 2),
                         "ratio_to_encode": round(ms / encode_ms, 3)})  # fmt: skip
            print(f"window {window:4d}  permutations {permutations:5d}  drift {ms:7.1f} ms  "
                  f"encode {encode_ms:7.1f} ms  ratio {ms / encode_ms:.2f}")  # fmt: skip
    manifest = runtime.manifest
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
            "load_average_1m": round(os.getloadavg()[0], 2),  # the machine is shared: ratios hold, ms vary
            "model": f"{manifest.name}:{manifest.version}", "repeats": repeats, "rows": rows}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    result = measure(args.bundle, args.repeats)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Workers against ONNX Runtime threads: which to add when a machine has more than one core.

    python -m bench.workers        # about a minute; writes bench/results/workers.json

Runs the shipped model three ways, each on every core of the machine (hey shares them):
1 worker x 1 ORT thread, 1 worker x 2 threads, 2 workers x 1 thread. It measures
single-image encode at c=64 (HTTP-bound) and 256-image application/x-npy requests at c=4
(compute-bound), and the RSS of the whole process tree.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench.harness import PORT, ROOT, rss_bytes, serve, without_settings

CONFIGS = [(1, 1), (1, 2), (2, 1)]  # (workers, ORT intra-op threads)
SECONDS = 8


def hey(url: str, body: Path, content_type: str, concurrency: int) -> tuple[float, int]:
    """Requests/s and the count of non-200 answers."""
    out = subprocess.run(
        ["hey", "-z", f"{SECONDS}s", "-c", str(concurrency), "-m", "POST", "-T", content_type, "-D", str(body), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    failed = sum(int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out) if code != "200")
    return rps, failed + out.count("Error distribution")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="vaeserve-workers-"))
    y, x = np.mgrid[0:28, 0:28]
    png = work / "digit.png"
    Image.fromarray((np.exp(-((x - 14) ** 2 + (y - 14) ** 2) / 30.0) * 255).astype(np.uint8)).save(png)
    npy = work / "batch.npy"
    np.save(npy, np.random.default_rng(0).random((256, 1, 28, 28), dtype=np.float32))
    results = []
    print("$ python -m bench.workers")
    print("| workers | ORT threads | single image c=64 req/s | 256 images c=4 images/s | failed | RSS MB |")
    print("|--:|--:|--:|--:|--:|--:|")
    for workers, threads in CONFIGS:
        env = without_settings(VAESERVE_WORKERS=str(workers), VAESERVE_ORT_INTRA_OP_THREADS=str(threads))
        with serve([sys.executable, "-m", "app", "--port", PORT, "--log-level", "warning"], env=env) as live:
            single, failed_single = hey(live.url + "/v1/encode", png, "image/png", 64)
            batched, failed_batched = hey(live.url + "/v1/encode", npy, "application/x-npy", 4)
            rss_mb = rss_bytes(live.pid) / 2**20
        row = {
            "workers": workers, "ort_threads": threads, "single_c64_rps": round(single, 1),
            "batch256_c4_images_per_s": round(batched * 256), "failed": failed_single + failed_batched,
            "rss_mb": round(rss_mb, 1),
        }  # fmt: skip
        results.append(row)
        print(f"| {workers} | {threads} | {single:,.0f} | {batched * 256:,.0f} | {row['failed']} | {rss_mb:,.0f} |")
    (ROOT / "bench" / "results" / "workers.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["failed"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

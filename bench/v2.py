"""What the Open Inference Protocol's encodings cost: v2 binary and JSON tensors against v1,
on the same server, in one run.

    python -m bench.v2                       # 10 s per point, about 2 minutes
    python -m bench.v2 --seconds 2           # a smoke test

One vaeserve on the shipped model (batching on, one ONNX Runtime thread) pinned to core 0,
`hey` on core 1. Encode requests of one image at c=16 and of 256 images at c=1:

    v1            POST /v1/encode, a PNG body (one image) or application/x-npy (256 images)
    v2 binary     POST /v2/models/mnist-vae-encoder/infer, Triton's binary tensor extension
    v2 JSON       the same, with the tensor as a JSON list of numbers

Every v2 row is also given as a ratio to the v1 row of the same size. Each body is checked
once (200, the right number of latents) before it is measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import numpy as np

from bench.harness import repo_path
from bench.load import BATCH, Body, hey, npy_batch, parse_hey, random_png, running, vaeserve
from model.bundle import InputSpec, load_bundle

DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "model" / "zoo" / "mnist-vae" / "1"


@dataclass(frozen=True)
class Case:
    protocol: str  # "v1", "v2 binary", "v2 JSON"
    images: int
    concurrency: int
    path: str
    body: Body
    headers: dict[str, str]


def _v2_bodies(images: np.ndarray, folder: Path, tag: str) -> tuple[Body, dict[str, str], Body]:
    """A binary-extension body (with its header) and a JSON body for one float32 batch."""
    tensor = {"name": "image", "datatype": "FP32", "shape": list(images.shape)}
    head = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": images.nbytes}}]}).encode()
    binary, as_json = folder / f"v2-{tag}.bin", folder / f"v2-{tag}.json"
    binary.write_bytes(head + images.astype("<f4").tobytes())
    as_json.write_text(json.dumps({"inputs": [{**tensor, "data": images.ravel().tolist()}]}))
    n = len(images)
    header = {"Inference-Header-Content-Length": str(len(head))}
    return Body(binary, "application/octet-stream", n), header, Body(as_json, "application/json", n)


def cases(spec: InputSpec, name: str, folder: Path) -> list[Case]:
    rng = np.random.default_rng(0)
    png = random_png(spec, rng)
    (folder / "one.png").write_bytes(png)
    (folder / "batch.npy").write_bytes(npy_batch(spec, rng))
    one = rng.random((1, spec.channels, spec.height, spec.width), dtype=np.float32)
    batch = rng.random((BATCH, spec.channels, spec.height, spec.width), dtype=np.float32)
    infer = f"/v2/models/{name}-encoder/infer"
    out = []
    for images, concurrency, v1 in (
        (one, 16, Body(folder / "one.png", "image/png", 1)),
        (batch, 1, Body(folder / "batch.npy", "application/x-npy", BATCH)),
    ):
        binary, header, as_json = _v2_bodies(images, folder, str(len(images)))
        out += [
            Case("v1", len(images), concurrency, "/v1/encode", v1, {}),
            Case("v2 binary", len(images), concurrency, infer, binary, header),
            Case("v2 JSON", len(images), concurrency, infer, as_json, {}),
        ]
    return out


def _check(url: str, case: Case, latent_dim: int) -> None:
    headers = {"content-type": case.body.content_type, **case.headers}
    response = httpx.post(url + case.path, content=case.body.data, headers=headers, timeout=60)
    if response.status_code != 200:
        raise RuntimeError(f"{case.protocol} {case.path}: {response.status_code} {response.text[:300]}")
    doc = response.json()
    rows = len(doc["results"]) if "results" in doc else doc["outputs"][0]["shape"][0]
    width = len(doc["results"][0]["mean"]) if "results" in doc else doc["outputs"][0]["shape"][1]
    if (rows, width) != (case.images, latent_dim):
        raise RuntimeError(f"{case.protocol}: got {(rows, width)} latents, expected {(case.images, latent_dim)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=None, help="write the raw numbers here (JSON)")
    args = parser.parse_args(argv)
    manifest = load_bundle(args.bundle).manifest
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, running(vaeserve(args.bundle, manifest.name, True)) as live:
        for case in cases(manifest.input, manifest.name, Path(tmp)):
            _check(live.url, case, manifest.latent_dim)
            total, statuses, errors, latency = parse_hey(
                hey(live.url + case.path, case.concurrency, args.seconds, case.body, case.headers)
            )
            ok = sum(n for code, n in statuses.items() if 200 <= code < 300)
            failed = sum(statuses.values()) - ok + sum(errors.values())
            rows.append({"protocol": case.protocol, "images": case.images, "concurrency": case.concurrency,
                         "body_bytes": case.body.path.stat().st_size, "req_per_s": ok / total,
                         "images_per_s": ok * case.images / total, "p50_ms": latency.get(50, 0) * 1000,
                         "failed": failed})  # fmt: skip
    print(f"{'request':34} {'body':>10} {'req/s':>9} {'images/s':>10} {'p50 ms':>8} {'vs v1':>6}")
    base = {r["images"]: r["req_per_s"] for r in rows if r["protocol"] == "v1"}
    for r in rows:
        r["ratio_to_v1"] = r["req_per_s"] / base[r["images"]]
        label = f"{r['protocol']}, {r['images']} image(s), c={r['concurrency']}"
        flag = f"  {r['failed']} FAILED" if r["failed"] else ""
        print(f"{label:34} {r['body_bytes']:>10,} {r['req_per_s']:9.1f} {r['images_per_s']:10.0f} "
              f"{r['p50_ms']:8.2f} {r['ratio_to_v1']:6.2f}{flag}")  # fmt: skip
    if args.out:
        meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
                "seconds": args.seconds, "bundle": repo_path(args.bundle)}  # fmt: skip
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 1 if any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())

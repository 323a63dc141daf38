"""Which graphs to quantise, and how: speed and quality of int8 variants against the float bundle.

    python -m bench.quantize                                  # the shipped model; about 20 minutes
    python -m bench.quantize --bundle models/x/1 --importance-samples 1000
    python -m bench.quantize --big                            # bench/make_big_model.py's 64x64x3 model

For each variant (encoder, decoder or both quantised; weight scales per channel or per
tensor: "encoder/channel", ..., "both/tensor"),
quantised as `python -m training.quantize` does (training/quantize.py), it measures:

- speed: in-process ONNX Runtime, batch 64, one thread on core 0: encoder images/s and
  decoder latents/s, the best of 5 rounds of 1 s, every graph in turn in each round;
- quality: the quality gate's metrics (test negative ELBO and IWAE NLL with
  --importance-samples, AUROC of every calibrated score against each built-in OOD set),
  and whether the gate's default tolerances (0.5 nats, 0.005 AUROC) pass.

The 64x64x3 model of bench/make_big_model.py has random weights and no data: with --big it
is calibrated on uniform random images and only speed and agreement with the float graphs
(relative error of mean, log_var and decoder output) are measured; there is no quality to
measure. Raw numbers go to --out (bench/results/quantize.json, or quantize-big.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from bench.harness import ROOT, repo_path
from bench.load import SERVER_CORE, pinned
from model.bundle import Bundle, load_bundle, write_bundle
from model.runtime import RuntimeOptions, VAERuntime
from training.data import bundle_arrays
from training.quantize import (
    GRAPH_INPUTS,
    Graph,
    QuantizeOptions,
    Tolerances,
    decoder_calibration_latents,
    gate_inputs,
    measure,
    quality_checks,
    quantize_graph,
)

BATCH = 64
ROUNDS, ROUND_S = 5, 1.0  # speed: the best of 5 rounds of 1 s per graph
VARIANTS: list[tuple[str, tuple[Graph, ...], bool]] = [  # name: which graphs / weight scales per channel or tensor
    ("float", (), True),
    ("encoder/channel", ("encoder",), True),
    ("encoder/tensor", ("encoder",), False),
    ("decoder/channel", ("decoder",), True),
    ("decoder/tensor", ("decoder",), False),
    ("both/channel", ("encoder", "decoder"), True),
    ("both/tensor", ("encoder", "decoder"), False),
]


@dataclass
class Variant:
    name: str
    graphs: dict[str, bytes]
    bytes: int
    encoder_per_s: float = 0.0
    decoder_per_s: float = 0.0
    metrics: dict[str, float] | None = None
    agreement: dict[str, float] | None = None


def session(graph: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def rate(session: ort.InferenceSession, feed: dict[str, NDArray[np.float32]], seconds: float) -> float:
    """Rows/s of one session at BATCH rows over `seconds`."""
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds and calls < 100_000:
        session.run(None, feed)
        calls += 1
    return BATCH * calls / (time.perf_counter() - started)


def variants(bundle: Bundle, calibration: NDArray[np.float32], seed: int, names: list[str]) -> list[Variant]:
    latents = decoder_calibration_latents(VAERuntime(bundle), calibration, seed)
    data = {"encoder": calibration, "decoder": latents}
    float_graphs: dict[str, bytes] = {g: (bundle.path / f"{g}.onnx").read_bytes() for g in GRAPH_INPUTS}
    quantized: dict[tuple[str, bool], bytes] = {}
    out = []
    for name, graphs, per_channel in VARIANTS:
        if name not in names:
            continue
        chosen = dict(float_graphs)
        for g in graphs:
            if (g, per_channel) not in quantized:
                path = bundle.path / f"{g}.onnx"
                quantized[(g, per_channel)] = quantize_graph(path, GRAPH_INPUTS[g], data[g], per_channel)
            chosen[g] = quantized[(g, per_channel)]
        out.append(Variant(name, chosen, sum(len(b) for b in chosen.values())))
    return out


def speeds(vs: list[Variant], images: NDArray[np.float32], latents: NDArray[np.float32]) -> None:
    """Every graph in turn, ROUNDS times round-robin on one thread on SERVER_CORE; each keeps its best
    round: on a shared machine the least disturbed one is the closest to what the graph costs."""
    feeds = {"encoder": {"image": images[:BATCH]}, "decoder": {"z": latents[:BATCH]}}
    sessions = {(v.name, g): session(v.graphs[g]) for v in vs for g in feeds}
    best = dict.fromkeys(sessions, 0.0)
    with pinned(SERVER_CORE):
        for key, s in sessions.items():
            s.run(None, feeds[key[1]])  # warm up
        for _ in range(ROUNDS):
            for key, s in sessions.items():
                best[key] = max(best[key], rate(s, feeds[key[1]], ROUND_S))
    for v in vs:
        v.encoder_per_s, v.decoder_per_s = best[(v.name, "encoder")], best[(v.name, "decoder")]
        print(f"  {v.name:22} encoder {v.encoder_per_s:7,.0f} images/s, decoder {v.decoder_per_s:7,.0f} latents/s",
              flush=True)  # fmt: skip


def as_bundle(parent: Bundle, graphs: dict[str, bytes], folder: Path) -> VAERuntime:
    files = {f"{g}.onnx": b for g, b in graphs.items()}
    return VAERuntime(load_bundle(write_bundle(folder, parent.manifest, files).path), RuntimeOptions())


def agreement(reference: VAERuntime, other: VAERuntime, images: NDArray[np.float32]) -> dict[str, float]:
    """Relative error ||int8 - float|| / ||float|| of mean, log_var, and the decoder's output on the means."""
    mean, log_var = reference.encode(images)
    q_mean, q_log_var = other.encode(images)
    params, q_params = reference.decode_params(mean), other.decode_params(mean)

    def rel(a: NDArray[np.float32], b: NDArray[np.float32]) -> float:
        return float(np.linalg.norm(b - a) / np.linalg.norm(a))

    return {"mean": rel(mean, q_mean), "log_var": rel(log_var, q_log_var), "decoder": rel(params, q_params)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quantize", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, default=ROOT / "model" / "zoo" / "mnist-vae" / "1")
    p.add_argument("--big", action="store_true", help="bench/make_big_model.py's model: speed and agreement only")
    p.add_argument("--importance-samples", type=int, default=100, help="K of the test IWAE NLL (default 100)")
    p.add_argument("--limit", type=int, default=500, help="images per OOD set for the AUROCs (default 500)")
    p.add_argument("--variants", help=f"comma-separated, from: {', '.join(v[0] for v in VARIANTS[1:])} (default all)")
    p.add_argument("--speed-only", action="store_true", help="skip the quality measurements")
    p.add_argument("--out", type=Path, help="JSON (default bench/results/quantize.json or quantize-big.json)")
    args = p.parse_args(argv)
    out = args.out or ROOT / "bench" / "results" / ("quantize-big.json" if args.big else "quantize.json")
    with tempfile.TemporaryDirectory(prefix="vaeserve-bench-quantize-") as tmp:
        work = Path(tmp)
        if args.big:
            from bench.make_big_model import make_bundle

            bundle = load_bundle(make_bundle(work / "big" / "1"))
            spec = bundle.manifest.input
            rng = np.random.default_rng(0)
            calibration = rng.random((256, spec.channels, spec.height, spec.width), dtype=np.float32)
            test = rng.random((256, spec.channels, spec.height, spec.width), dtype=np.float32)
            seed = 0
        else:
            bundle = load_bundle(args.bundle)
            splits = bundle_arrays(bundle.manifest)
            calibration, test = splits["calibration"], splits["test"]
            options = QuantizeOptions(test_importance_samples=args.importance_samples, ood_limit=args.limit)
            inputs = gate_inputs(bundle, test, options)
            seed = inputs.seed
        print(f"{bundle.manifest.name}:{bundle.manifest.version}: quantising", flush=True)
        names = ["float", *args.variants.split(",")] if args.variants else [v[0] for v in VARIANTS]
        vs = variants(bundle, calibration, seed, names)
        latents = decoder_calibration_latents(VAERuntime(bundle), test[:BATCH], seed)
        print("speed, batch 64, one thread:", flush=True)
        speeds(vs, test, latents)
        reference = as_bundle(bundle, vs[0].graphs, work / "v0")
        for i, v in enumerate(vs[1:], start=1):
            v.agreement = agreement(reference, as_bundle(bundle, v.graphs, work / f"v{i}"), test[:BATCH])
        if not args.big and not args.speed_only:
            print("quality (the gate's metrics):", flush=True)
            for i, v in enumerate(vs):
                started = time.perf_counter()
                v.metrics = measure(as_bundle(bundle, v.graphs, work / f"q{i}"), inputs).gate
                print(f"  {v.name:22} {quality(vs[0], v)} ({time.perf_counter() - started:.0f} s)", flush=True)
    print_report(vs)
    doc: dict[str, Any] = {
        "command": "python -m bench.quantize " + " ".join(sys.argv[1:] if argv is None else argv),
        "bundle": "bench/make_big_model.py" if args.big else repo_path(args.bundle),
        "onnxruntime": ort.__version__,
        "importance_samples": None if args.big else args.importance_samples,
        "ood_limit": None if args.big else args.limit,
        "variants": [{k: val for k, val in v.__dict__.items() if k != "graphs"} for v in vs],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nRaw numbers: {out}")
    return 0


def quality(base: Variant, v: Variant) -> str:
    """The gate's verdict on `v` against the float variant, with the largest changes."""
    if v.metrics is None or base.metrics is None:
        return "-"
    checks = quality_checks(base.metrics, v.metrics, Tolerances())
    worst = {"nll": 0.0, "auroc": 0.0}
    for c in checks:
        key = "auroc" if c.metric.startswith("AUROC") else "nll"
        worst[key] = max(worst[key], abs(c.change))
    failed = [c.metric for c in checks if not c.passed]
    verdict = "passes" if not failed else f"fails ({', '.join(failed)})"
    nll = f"neg ELBO {v.metrics['test neg_elbo']:.2f}, IWAE {v.metrics['test iwae_nll']:.2f}"
    return f"{nll}; max change {worst['nll']:.3f} nats, {worst['auroc']:.4f} AUROC: {verdict}"


def print_report(vs: list[Variant]) -> None:
    base = vs[0]
    print("\n| variant | graphs MB | encoder images/s | decoder latents/s | agreement (rel. error) | quality |")
    print("|---|--:|--:|--:|---|---|")
    for v in vs:
        agree = "-" if v.agreement is None else ", ".join(f"{k} {x:.3f}" for k, x in v.agreement.items())
        print(
            f"| {v.name} | {v.bytes / 1e6:.2f} | {v.encoder_per_s:,.0f} ({v.encoder_per_s / base.encoder_per_s:.2f}x) "
            f"| {v.decoder_per_s:,.0f} ({v.decoder_per_s / base.decoder_per_s:.2f}x) | {agree} | {quality(base, v)} |"
        )


if __name__ == "__main__":
    sys.exit(main())

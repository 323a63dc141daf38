"""Anomaly-detection benchmark: one-vs-rest on the built-in digits, and the shipped model
against the built-in out-of-distribution sets. Results go to bench/results/anomaly*.

    python -m bench.anomaly                      # both parts (about 10 minutes on 2 cores)
    python -m bench.anomaly --classes 0 1 7      # one-vs-rest for these classes only
    python -m bench.anomaly --skip-ood           # one-vs-rest only

One-vs-rest: for each class c, `python -m training --data mnist --labels c` trains a small
conv VAE (ONE_CLASS below) on that class's training split, and `python -m training.evaluate`
scores the class's own test split (normal) against 500 digits of the other classes
(`builtin:other-digits`, never trained on). Out of distribution: the shipped model
(model/zoo/mnist-vae/1), its test split (normal) against builtin:noise, inverted, rotated,
letters and digits8x8 (training/anomaly_sets.py). Every score, K=64, seed 0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from training.evaluate import EVALUATED_SCORES
from training.evaluate import main as evaluate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SHIPPED = ROOT / "model" / "zoo" / "mnist-vae" / "1"
ONE_CLASS = [  # ~500 images per class: 250 train, 50 validation, 100 calibration, 100 test
    "--data", "mnist", "--epochs", "60", "--latent-dim", "8",
    "--set", "model.channels=[16, 32]", "--set", "model.hidden=[128]",
    "--set", "train.batch_size=32", "--set", 'train.lr_schedule="cosine"', "--set", "train.augment_shift=1",
    "--set", "train.threads=2",
    "--set", "data.test_fraction=0.2", "--set", "data.calibration_fraction=0.2",
    "--set", "data.validation_fraction=0.1",
    "--set", "calibration.test_importance_samples=256",
]  # fmt: skip
SUMMARY_SCORES = ("neg_elbo", "iwae_nll", "mse", "complexity", "png_bits")


def one_vs_rest(digit: int, work: Path) -> list[dict[str, object]]:
    out = work / f"digit-{digit}" / "1"
    cmd = [sys.executable, "-m", "training", "--out", str(out), "--run-dir", str(work / "runs" / str(digit)),
           "--labels", str(digit), "--name", f"digit-{digit}", "--force", "-q", *ONE_CLASS]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    print(f"trained digit {digit} in {time.perf_counter() - started:.0f} s", flush=True)
    report = RESULTS / "anomaly-one-vs-rest" / f"digit-{digit}"
    if evaluate([str(out), "--anomaly", "builtin:other-digits", "--out", str(report), "-q"]) != 0:
        raise SystemExit(f"evaluation of digit {digit} failed")
    rows: list[dict[str, object]] = json.loads((report / "evaluation.json").read_text())["results"]
    return [{"digit": digit, **r} for r in rows]


def summary(rows: list[dict[str, object]]) -> str:
    """AUROC per normal digit (rows) and score (columns), and the mean."""
    lines = ["| normal digit | " + " | ".join(SUMMARY_SCORES) + " |", "|---" * (len(SUMMARY_SCORES) + 1) + "|"]
    digits = sorted({int(r["digit"]) for r in rows})  # type: ignore[call-overload]
    auroc = {(r["digit"], r["score"]): float(r["auroc"]) for r in rows}  # type: ignore[arg-type]
    for d in digits:
        lines.append(f"| {d} | " + " | ".join(f"{auroc[d, s]:.3f}" for s in SUMMARY_SCORES) + " |")
    means = [sum(auroc[d, s] for d in digits) / len(digits) for s in SUMMARY_SCORES]
    lines.append("| mean | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", type=int, nargs="+", default=[0, 1, 7], help="normal digits for one-vs-rest")
    p.add_argument("--work", type=Path, help="where the one-class bundles are trained (default: a temp dir)")
    p.add_argument("--skip-ood", action="store_true", help="skip the shipped model's OOD evaluation")
    p.add_argument("--skip-one-vs-rest", action="store_true", help="skip one-vs-rest")
    args = p.parse_args(argv)
    assert set(SUMMARY_SCORES) <= set(EVALUATED_SCORES)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.skip_ood and evaluate([str(SHIPPED), "--out", str(RESULTS / "anomaly-ood"), "-q"]) != 0:
        return 1
    if not args.skip_one_vs_rest:
        work = args.work or Path(tempfile.mkdtemp(prefix="vaeserve-anomaly-"))
        rows = [row for digit in args.classes for row in one_vs_rest(digit, work)]
        (RESULTS / "anomaly-one-vs-rest.json").write_text(json.dumps(rows, indent=2) + "\n")
        table = summary(rows)
        (RESULTS / "anomaly-one-vs-rest.md").write_text(
            "AUROC, one-vs-rest: normal = the digit's test split, anomalies = 500 other digits; K=64, seed 0.\n\n"
            + table
        )
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Anomaly-detection benchmark: one-vs-rest on the built-in digits, and the shipped model
against the built-in out-of-distribution sets. Results go to bench/results/anomaly*.

    python -m bench.anomaly                      # both parts (about 20 minutes on 2 cores)
    python -m bench.anomaly --classes 0 1 7      # one-vs-rest for these classes only
    python -m bench.anomaly --skip-ood           # one-vs-rest only
    python -m bench.anomaly --skip-one-vs-rest   # the OOD sets only (about 6 minutes)

One-vs-rest: for each class c, `python -m training --data mnist --labels c` trains a small
conv VAE (ONE_CLASS below) on that class's training split, and `python -m training.evaluate`
scores the class's own test split (normal) against 500 digits of the other classes
(`builtin:other-digits`, never trained on). Out of distribution: the shipped model
(model/zoo/mnist-vae/1), its test split (normal) against builtin:noise, inverted, rotated,
letters and digits8x8 (training/anomaly_sets.py), drawn with seeds 0, 1 and 2 (the seed
also draws the scores' noise), and a summary of AUROC over the seeds. Every score, K=64.
anomaly-heatmaps.png shows input | reconstruction | heatmap for two test digits, the same
with a white square in a corner, and two rotated digits, letters and upscaled 8x8 digits.
"""

from __future__ import annotations

import argparse
import io
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
    "--set", "train.batch_size=32", "--set", 'train.lr_schedule="cosine"', "--set", 'train.augment=[{kind="shift"}]',
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


def heatmaps(path: Path) -> None:
    """Input, reconstruction and heatmap of the shipped model for a few normal and odd images."""
    import numpy as np
    from PIL import Image

    from model.bundle import load_bundle
    from model.preprocess import encode_png, heatmap_png
    from model.runtime import VAERuntime
    from training.anomaly_sets import load_set

    runtime = VAERuntime(load_bundle(SHIPPED))
    test = load_set("builtin:test", runtime.manifest, None, 500, 0)
    patched = test[:2].copy()
    patched[:, :, 2:8, 2:8] = 1.0  # a white square in the blank corner
    rows = [test[:2], patched] + [
        load_set(f"builtin:{name}", runtime.manifest, test, 2, 0) for name in ("rotated", "letters", "digits8x8")
    ]
    images = np.concatenate(rows)  # (10, 1, 28, 28)
    scores = runtime.score(images, importance_samples=64, seed=0)

    def rgb(png: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(png)) as image:
            return np.asarray(image.convert("RGB"))

    tiles = [
        np.concatenate([rgb(encode_png(x)), rgb(encode_png(r)), rgb(heatmap_png(h))], axis=1)
        for x, r, h in zip(images, scores.reconstructions, scores.pixel_nll, strict=True)
    ]  # each (28, 84, 3): input | reconstruction | heatmap
    pairs = [np.concatenate(tiles[i : i + 2], axis=1) for i in range(0, len(tiles), 2)]
    grid = Image.fromarray(np.concatenate(pairs, axis=0))
    grid.resize((grid.width * 3, grid.height * 3), Image.Resampling.NEAREST).save(path)


def ood(seeds: list[int]) -> None:
    """The shipped model against every built-in OOD set, once per seed, and the AUROC summary."""
    rows = []
    for seed in seeds:
        report = RESULTS / "anomaly-ood" / f"seed-{seed}"
        if evaluate([str(SHIPPED), "--out", str(report), "--seed", str(seed), "-q"]) != 0:
            raise SystemExit(f"evaluation with seed {seed} failed")
        rows += [{"seed": seed, **r} for r in json.loads((report / "evaluation.json").read_text())["results"]]
    (RESULTS / "anomaly-ood.json").write_text(json.dumps(rows, indent=2) + "\n")
    sets = list(dict.fromkeys(str(r["anomaly_set"]) for r in rows))
    lines = [
        f"AUROC of the shipped model, normal = its test split (500), 500 images per OOD set; "
        f"min / mean over seeds {', '.join(map(str, seeds))}; K=64.\n",
        "| OOD set | " + " | ".join(SUMMARY_SCORES) + " |",
        "|---" * (len(SUMMARY_SCORES) + 1) + "|",
    ]
    for name in sets:
        cells = []
        for score in SUMMARY_SCORES:
            values = [float(r["auroc"]) for r in rows if r["anomaly_set"] == name and r["score"] == score]
            cells.append(f"{min(values):.3f} / {sum(values) / len(values):.3f}")
        lines.append(f"| {name.removeprefix('builtin:')} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    (RESULTS / "anomaly-ood.md").write_text(table)
    print(table)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classes", type=int, nargs="+", default=list(range(10)), help="normal digits for one-vs-rest")
    p.add_argument("--work", type=Path, help="where the one-class bundles are trained (default: a temp dir)")
    p.add_argument("--ood-seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the OOD sets")
    p.add_argument("--skip-ood", action="store_true", help="skip the shipped model's OOD evaluation")
    p.add_argument("--skip-one-vs-rest", action="store_true", help="skip one-vs-rest")
    args = p.parse_args(argv)
    assert set(SUMMARY_SCORES) <= set(EVALUATED_SCORES)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.skip_ood:
        ood(args.ood_seeds)
        heatmaps(RESULTS / "anomaly-heatmaps.png")
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

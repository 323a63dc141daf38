"""Evaluate a bundle's anomaly scores: its normal set against one or more anomaly sets.

    python -m training.evaluate model/zoo/mnist-vae/1 --out runs/evaluate
    python -m training.evaluate BUNDLE --normal builtin:test --anomaly builtin:noise my_anomalies/ bad.npz

Every image is scored by model/'s runtime (K importance samples, one seed), as the
service would score it. For each anomaly set and each score (anomalies are the positive
class, higher scores more anomalous): AUROC, AUPRC (average precision), the FPR at 95 %
TPR, and the F1 of the decision `score > threshold` at the bundle's calibrated threshold
(at its false-positive rate) where the bundle calibrated that score. Writes
evaluation.md (the table), evaluation.json and roc.png to --out. Sets are described in
training/anomaly_sets.py.

Exit codes: 0 done, 1 evaluation failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score, roc_curve

from model.bundle import Manifest, load_bundle
from model.decision import decide, default_importance_samples
from model.errors import BundleError
from model.runtime import RuntimeOptions, ScoreBatch, VAERuntime, batched_scores
from model.scores import CALIBRATED_SCORES, SCORE_NAMES
from training.anomaly_sets import OOD_SETS, load_set
from training.sources import DataError

log = logging.getLogger(__name__)

EVALUATED_SCORES = tuple(name for name in SCORE_NAMES if name != "bits_per_dim")  # bits_per_dim ranks as iwae_nll
PLOTTED_SCORES = CALIBRATED_SCORES


@dataclass(frozen=True)
class ScoreMetrics:
    """How well one score separates one anomaly set from the normal set."""

    anomaly_set: str
    score: str
    normal: int  # images
    anomalies: int
    auroc: float
    auprc: float
    fpr_at_95_tpr: float
    threshold: float | None  # the calibrated threshold, when the bundle calibrated this score
    f1_at_threshold: float | None


def score_metrics(name: str, score: str, normal: NDArray[np.float64], anomalous: NDArray[np.float64],
                  threshold: float | None) -> ScoreMetrics:  # fmt: skip
    """AUROC, AUPRC, FPR at 95 % TPR, and F1 at `threshold`; anomalies are the positives."""
    labels = np.concatenate([np.zeros(len(normal)), np.ones(len(anomalous))])
    values = np.concatenate([normal, anomalous])
    fpr, tpr, _ = roc_curve(labels, values)
    f1 = None if threshold is None else float(f1_score(labels, values > threshold, zero_division=0.0))
    return ScoreMetrics(
        anomaly_set=name,
        score=score,
        normal=len(normal),
        anomalies=len(anomalous),
        auroc=float(roc_auc_score(labels, values)),
        auprc=float(average_precision_score(labels, values)),
        fpr_at_95_tpr=float(fpr[np.searchsorted(tpr, 0.95, side="left")]),  # the lowest FPR reaching 95 % TPR
        threshold=threshold,
        f1_at_threshold=f1,
    )


def calibrated_thresholds(manifest: Manifest, scores: tuple[str, ...]) -> dict[str, float]:
    """Each calibrated score's threshold at the bundle's false-positive rate, decided as the service decides."""
    cal = manifest.calibration
    if cal is None:
        return {}
    empty = np.zeros(0)
    thresholds = {name: decide(cal, {name: empty}, name).threshold for name in scores if name in cal.scores}
    return {name: t for name, t in thresholds.items() if t is not None}


def evaluate(
    runtime: VAERuntime, normal: ScoreBatch, anomalies: dict[str, ScoreBatch], scores: tuple[str, ...]
) -> list[ScoreMetrics]:
    thresholds = calibrated_thresholds(runtime.manifest, scores)
    return [
        score_metrics(name, score, normal[score], scored[score], thresholds.get(score))
        for name, scored in anomalies.items()
        for score in scores
    ]


def markdown_table(rows: list[ScoreMetrics]) -> str:
    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        "| anomaly set | score | AUROC | AUPRC | FPR at 95% TPR | F1 at calibrated threshold |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.anomaly_set} | {r.score} | {r.auroc:.3f} | {r.auprc:.3f} | {r.fpr_at_95_tpr:.3f} | "
        f"{fmt(r.f1_at_threshold)} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def roc_png(normal: ScoreBatch, anomalies: dict[str, ScoreBatch], scores: tuple[str, ...]) -> bytes:
    """One ROC panel per anomaly set, one curve per score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(anomalies))
    rows = -(-len(anomalies) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 4 * rows), squeeze=False)
    for ax, (name, scored) in zip(axes.flat, anomalies.items(), strict=False):
        for score in scores:
            labels = np.concatenate([np.zeros(len(normal)), np.ones(len(scored))])
            values = np.concatenate([normal[score], scored[score]])
            fpr, tpr, _ = roc_curve(labels, values)
            ax.plot(fpr, tpr, label=f"{score} ({roc_auc_score(labels, values):.3f})")
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set(title=name, xlabel="false-positive rate", ylabel="true-positive rate", xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(loc="lower right", fontsize=8, title="score (AUROC)", title_fontsize=8)
    for ax in list(axes.flat)[len(anomalies) :]:
        ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path, help="bundle directory, e.g. model/zoo/mnist-vae/1")
    p.add_argument("--normal", default="builtin:test", help="normal images (default: the bundle's test split)")
    p.add_argument(
        "--anomaly",
        nargs="+",
        default=[f"builtin:{name}" for name in OOD_SETS],
        help="anomaly sets: builtin:<set>, a folder of images or a .npz (default: every built-in OOD set)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for evaluation.md, evaluation.json and roc.png")
    p.add_argument("--limit", type=int, default=500, help="at most this many images per set (default 500)")
    p.add_argument("--importance-samples", type=int, help="K (default: the bundle's calibration K, else 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sets and of the scores' noise")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> list[ScoreMetrics]:
    if args.limit < 1:
        raise DataError(f"--limit must be >= 1, got {args.limit}")
    runtime = VAERuntime(load_bundle(args.bundle), RuntimeOptions())
    manifest = runtime.manifest
    cal = manifest.calibration
    k = args.importance_samples or default_importance_samples(cal)
    if k < 1:
        raise DataError(f"--importance-samples must be >= 1, got {k}")
    normal_images = load_set(args.normal, manifest, None, args.limit, args.seed)
    sets = {name: load_set(name, manifest, normal_images, args.limit, args.seed) for name in args.anomaly}
    log.info("scoring %d normal images and %s with K=%d", len(normal_images),
             ", ".join(f"{len(v)} {k}" for k, v in sets.items()), k)  # fmt: skip
    normal = batched_scores(runtime, normal_images, k, args.seed)
    anomalies = {name: batched_scores(runtime, images, k, args.seed) for name, images in sets.items()}
    rows = evaluate(runtime, normal, anomalies, EVALUATED_SCORES)
    args.out.mkdir(parents=True, exist_ok=True)
    header = (
        f"Bundle `{manifest.name}:{manifest.version}`, normal set `{args.normal}` ({len(normal_images)} images), "
        f"K={k}, seed {args.seed}; F1 at each score's threshold at the calibrated FPR "
        f"{cal.false_positive_rate if cal else 'n/a'}.\n\n"
    )
    (args.out / "evaluation.md").write_text(header + markdown_table(rows))
    (args.out / "evaluation.json").write_text(
        json.dumps(
            {
                "bundle": str(args.bundle),
                "normal": args.normal,
                "importance_samples": k,
                "seed": args.seed,
                "results": [asdict(r) for r in rows],
            },
            indent=2,
        )
        + "\n"
    )
    (args.out / "roc.png").write_bytes(roc_png(normal, anomalies, PLOTTED_SCORES))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("training").setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        rows = run(args)
    except (DataError, BundleError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:  # e.g. an anomaly set the metrics cannot use
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(markdown_table(rows), end="")
    print(f"wrote {args.out / 'evaluation.md'}, {args.out / 'evaluation.json'} and {args.out / 'roc.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

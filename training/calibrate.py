"""Calibration and test metrics, computed by model/'s runtime on the exported graphs.

The threshold and p-values the service gives come from scores computed here by the
same `VAERuntime` code the service runs, on the held-out calibration split. Run as a
command, it re-calibrates an existing bundle without retraining: the calibration split is
rebuilt from the manifest's own split recipe, the ONNX files are left byte for byte as
they are, and the manifest and model card are rewritten atomically.

    python -m training.calibrate model/zoo/mnist-vae/1 --score complexity --fpr 0.01

Exit codes: 0 done, 2 bad input (an unreadable bundle, data that is not the bundle's).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from model.bundle import Calibration, SplitMetrics, load_bundle, write_bundle
from model.decision import threshold_at_fpr
from model.errors import BundleError
from model.latents import latent_statistics
from model.runtime import VAERuntime, batched_scores
from model.scores import CALIBRATED_SCORES, bits_per_dim
from training import report
from training.config import CalibrationConfig, ConfigError
from training.data import DataError, bundle_splits

log = logging.getLogger(__name__)


def calibrate(runtime: VAERuntime, images: NDArray[np.float32], config: CalibrationConfig) -> Calibration:
    """Score the calibration split; threshold the chosen score at the false-positive rate."""
    scores = batched_scores(runtime, images, config.importance_samples, config.seed)
    sorted_scores = {name: np.sort(scores[name]).tolist() for name in CALIBRATED_SCORES}
    return Calibration(
        score=config.score,
        split_size=len(images),
        false_positive_rate=config.false_positive_rate,
        threshold=threshold_at_fpr(sorted_scores[config.score], config.false_positive_rate),
        importance_samples=config.importance_samples,
        seed=config.seed,
        scores=sorted_scores,
    )


def split_metrics(
    runtime: VAERuntime, images: NDArray[np.float32], split: str, importance_samples: int, seed: int
) -> SplitMetrics:
    """Mean negative ELBO, its parts, IWAE NLL and bits/dim over one split."""
    scores = batched_scores(runtime, images, importance_samples, seed)
    iwae_nll = float(scores["iwae_nll"].mean())
    return SplitMetrics(
        split=split,
        images=len(images),
        neg_elbo=float(scores["neg_elbo"].mean()),
        reconstruction=float(scores["reconstruction"].mean()),
        kl=float(scores["kl"].mean()),
        iwae_nll=iwae_nll,
        importance_samples=importance_samples,
        bits_per_dim=float(bits_per_dim(iwae_nll, runtime.input.dims)),
    )


def recalibrate(path: Path, config: CalibrationConfig, command: str = "") -> Calibration:
    """Re-calibrate the bundle at `path` in place (calibration and latent statistics); only
    manifest.json and MODEL_CARD.md change."""
    bundle = load_bundle(path)
    splits = bundle_splits(bundle.manifest)
    images = splits["calibration"]
    log.info("calibrating %s on %d images (K=%d)", path, len(images), config.importance_samples)
    runtime = VAERuntime(bundle)
    calibration = calibrate(runtime, images, config)
    latents = latent_statistics(runtime, splits["train"], seed=config.seed)
    files = {name: (path / name).read_bytes() for name in bundle.manifest.files}
    if "MODEL_CARD.md" in files:
        when = datetime.now(UTC).isoformat(timespec="seconds")
        note = f"- Re-calibrated {when} without retraining" + (f": `{command}`.\n" if command else ".\n")
        section = report.calibration_section(calibration, note)
        files["MODEL_CARD.md"] = report.replace_section(files["MODEL_CARD.md"].decode(), section).encode()
    update = {"calibration": calibration, "latents": latents}
    write_bundle(path, bundle.manifest.model_copy(update=update), files, force=True)
    return calibration


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = CalibrationConfig()
    p = argparse.ArgumentParser(
        prog="python -m training.calibrate", description="Re-calibrate a bundle's anomaly threshold without retraining."
    )
    p.add_argument("bundle", type=Path, help="bundle directory, e.g. model/zoo/mnist-vae/1")
    p.add_argument("--score", choices=CALIBRATED_SCORES, help="the decision score (default: the bundle's)")
    p.add_argument("--fpr", type=float, help="false-positive rate of the threshold (default: the bundle's)")
    p.add_argument(
        "--importance-samples", type=int, help=f"K (default: the bundle's, else {defaults.importance_samples})"
    )
    p.add_argument("--seed", type=int, help="seed of the noise (default: the bundle's, else 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return p.parse_args(argv)


def _config(args: argparse.Namespace, old: Calibration | None) -> CalibrationConfig:
    config = CalibrationConfig()
    if old is not None:
        config.false_positive_rate, config.importance_samples, config.seed = (
            old.false_positive_rate, old.importance_samples, old.seed)  # fmt: skip
        if old.score in CALIBRATED_SCORES:
            config.score = old.score
    if args.score is not None:
        config.score = args.score
    for name, value in (("false_positive_rate", args.fpr), ("importance_samples", args.importance_samples),
                        ("seed", args.seed)):  # fmt: skip
        if value is not None:
            setattr(config, name, value)
    if not 0 < config.false_positive_rate < 1:
        raise ConfigError(f"--fpr must be in (0, 1), got {config.false_positive_rate}")
    if config.importance_samples < 1:
        raise ConfigError(f"--importance-samples must be >= 1, got {config.importance_samples}")
    return config


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("training").setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        config = _config(args, load_bundle(args.bundle).manifest.calibration)
        command = "python -m training.calibrate " + shlex.join(sys.argv[1:] if argv is None else argv)
        cal = recalibrate(args.bundle, config, command)
    except (ConfigError, DataError, BundleError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"calibrated {args.bundle}: {cal.score} threshold {cal.threshold:.6g} at FPR {cal.false_positive_rate} "
        f"on {cal.split_size} images (K={cal.importance_samples}); scores kept: {', '.join(cal.scores)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

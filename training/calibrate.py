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
import re
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from model.bundle import Calibration, SplitMetrics, load_bundle, write_bundle
from model.errors import BundleError
from model.runtime import SCORE_NAMES, RuntimeOptions, VAERuntime
from model.scores import bits_per_dim, threshold_at_fpr
from training import report
from training.config import CalibrationConfig, ConfigError
from training.data import bundle_splits
from training.sources import DataError, ImageSplit

log = logging.getLogger(__name__)

CALIBRATED_SCORES = ("neg_elbo", "iwae_nll", "mse", "complexity")  # the scores /v1/score can decide with
CHUNK_VALUES = 2**20  # pixel values read and scored at a time (64 MNIST digits, 5 RGB 256x256 images)


def chunk_size(dims: int) -> int:
    """Images per chunk for images of `dims` values: bounds memory whatever their size (1 to 64)."""
    return max(1, min(64, CHUNK_VALUES // dims))


def scoring_runtime(path: Path) -> VAERuntime:
    """The bundle's runtime, decoding at most a chunk's worth of images per ONNX Runtime call."""
    bundle = load_bundle(path)
    return VAERuntime(bundle, RuntimeOptions(decode_chunk=chunk_size(bundle.manifest.input.dims)))


def stream_scores(runtime: VAERuntime, split: ImageSplit, importance_samples: int, seed: int, *,
                  desc: str = "scoring", progress: bool = False) -> dict[str, NDArray[np.float64]]:  # fmt: skip
    """Every score in SCORE_NAMES for each image of `split`, (N,) each, read and scored
    CHUNK images at a time; the values do not depend on the chunking (model/runtime.py)."""
    parts: list[dict[str, NDArray[np.float64]]] = []
    with tqdm(total=len(split), desc=desc, unit="img", disable=None if progress else True) as bar:
        for images in split.chunks(chunk_size(runtime.input.dims)):
            scores = runtime.score(images, importance_samples, seed)
            parts.append({name: scores.by_name(name) for name in SCORE_NAMES})
            bar.update(len(images))
    return {name: np.concatenate([p[name] for p in parts]) for name in SCORE_NAMES}


def calibrate(runtime: VAERuntime, split: ImageSplit, config: CalibrationConfig, progress: bool = False) -> Calibration:
    """Score the calibration split; threshold the chosen score at the false-positive rate.

    With n images no p-value is below 1/(n+1), so no threshold promises a lower false-positive
    rate: a warning says so when the asked rate is lower, and the manifest keeps 1/(n+1)."""
    scores = stream_scores(runtime, split, config.importance_samples, config.seed, desc="calibration",
                           progress=progress)  # fmt: skip
    sorted_scores = {name: np.sort(scores[name]).tolist() for name in CALIBRATED_SCORES}
    calibration = Calibration(
        score=config.score,
        split_size=len(split),
        false_positive_rate=config.false_positive_rate,
        threshold=threshold_at_fpr(sorted_scores[config.score], config.false_positive_rate),
        importance_samples=config.importance_samples,
        seed=config.seed,
        scores=sorted_scores,
        smallest_p_value=1.0 / (len(split) + 1),
    )
    warning = report.small_split_warning(calibration)
    if warning:
        log.warning("%s", warning)
    return calibration


def split_metrics(runtime: VAERuntime, split: ImageSplit, name: str, importance_samples: int, seed: int,
                  progress: bool = False) -> SplitMetrics:  # fmt: skip
    """Mean negative ELBO, its parts, IWAE NLL and bits/dim over one split."""
    scores = stream_scores(runtime, split, importance_samples, seed, desc=f"{name} K={importance_samples}",
                           progress=progress)  # fmt: skip
    iwae_nll = float(scores["iwae_nll"].mean())
    return SplitMetrics(
        split=name,
        images=len(split),
        neg_elbo=float(scores["neg_elbo"].mean()),
        reconstruction=float(scores["reconstruction"].mean()),
        kl=float(scores["kl"].mean()),
        iwae_nll=iwae_nll,
        importance_samples=importance_samples,
        bits_per_dim=float(bits_per_dim(iwae_nll, runtime.input.dims)),
    )


def recalibrate(path: Path, config: CalibrationConfig, command: str = "", progress: bool = False) -> Calibration:
    """Re-calibrate the bundle at `path` in place; only manifest.json and MODEL_CARD.md change."""
    bundle = load_bundle(path)
    split = bundle_splits(bundle.manifest)["calibration"]
    log.info("calibrating %s on %d images (K=%d)", path, len(split), config.importance_samples)
    calibration = calibrate(scoring_runtime(path), split, config, progress)
    files = {name: (path / name).read_bytes() for name in bundle.manifest.files}
    if "MODEL_CARD.md" in files:
        when = datetime.now(UTC).isoformat(timespec="seconds")
        note = f"- Re-calibrated {when} without retraining" + (f": `{command}`.\n" if command else ".\n")
        section = report.calibration_section(calibration, note)
        card = files["MODEL_CARD.md"].decode()
        card, found = re.subn(r"## Anomaly calibration\n.*?(?=\n## |\Z)", lambda _: section.rstrip("\n") + "\n", card,
                              count=1, flags=re.DOTALL)  # fmt: skip
        files["MODEL_CARD.md"] = (card if found else card + "\n" + section).encode()
    write_bundle(path, bundle.manifest.model_copy(update={"calibration": calibration}), files, force=True)
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
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors, no progress bars")
    return p.parse_args(argv)


def _config(args: argparse.Namespace, old: Calibration | None) -> CalibrationConfig:
    """The bundle's calibration settings, with the ones given on the command line instead."""
    values: dict[str, object] = {}
    if old is not None:
        values = {"false_positive_rate": old.false_positive_rate, "importance_samples": old.importance_samples,
                  "seed": old.seed}  # fmt: skip
        if old.score in CALIBRATED_SCORES:
            values["score"] = old.score
    given = {"score": args.score, "false_positive_rate": args.fpr, "importance_samples": args.importance_samples,
             "seed": args.seed}  # fmt: skip
    values |= {name: value for name, value in given.items() if value is not None}
    fpr, k = values.get("false_positive_rate", 0.01), values.get("importance_samples", 1)
    if not 0 < fpr < 1:  # type: ignore[operator]
        raise ConfigError(f"--fpr must be in (0, 1), got {fpr}")
    if k < 1:  # type: ignore[operator]
        raise ConfigError(f"--importance-samples must be >= 1, got {k}")
    return CalibrationConfig.model_validate(values)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("training").setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        config = _config(args, load_bundle(args.bundle).manifest.calibration)
        command = "python -m training.calibrate " + shlex.join(sys.argv[1:] if argv is None else argv)
        cal = recalibrate(args.bundle, config, command, progress=not args.quiet)
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

"""Calibration and test metrics, computed by model/'s runtime on the exported graphs.

The threshold and p-values the service gives come from scores computed here by the
same `VAERuntime` code the service runs, on the held-out calibration split; so do the
latent model (statistics and Gaussian mixture of the training split's posterior means),
the reference scores of the combined scores (validation split), the heatmaps' pixel
threshold and the golden set. Run as a command, it re-calibrates an existing bundle
without retraining: the splits are rebuilt from the manifest's own split recipe, the ONNX
files are left byte for byte as they are, and the manifest, model card and golden set are
rewritten atomically.

    python -m training.calibrate model/zoo/mnist-vae/1 --score fisher --fpr 0.01
    python -m training.calibrate BUNDLE --combine mse dssim latent_nll --mixture-components 20

Exit codes: 0 done, 2 bad input (an unreadable bundle, data that is not the bundle's).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError
from tqdm import tqdm

from model.bundle import (
    Bundle,
    Calibration,
    Combination,
    GoldenInfo,
    LatentMixture,
    LatentStatistics,
    Manifest,
    SplitMetrics,
    load_bundle,
    write_bundle,
)
from model.decision import threshold_at_fpr
from model.errors import BundleError
from model.golden import GOLDEN, GoldenSet, compute_golden, golden_bytes, golden_inputs
from model.latents import posterior, posterior_statistics
from model.localise import pixel_maps
from model.runtime import RuntimeOptions, VAERuntime, chunk_size, combined_scores
from model.scores import CALIBRATED_SCORES, COMBINED_SCORES, SCORE_NAMES, bits_per_dim
from training import report
from training.config import CalibrationConfig, ConfigError, config_error
from training.data import bundle_splits
from training.sources import DataError, ImageSplit

log = logging.getLogger(__name__)

LATENT_IMAGES = 20_000  # training images (the split's first, in its shuffled order) the latent model is fitted on


def scoring_runtime(path: Path) -> VAERuntime:
    """The bundle's runtime, decoding at most a chunk's worth of images per ONNX Runtime call."""
    bundle = load_bundle(path)
    return VAERuntime(bundle, RuntimeOptions(decode_chunk=chunk_size(bundle.manifest.input.dims)))


@dataclass(frozen=True)
class SplitScores:
    """Every score of each image of a split, and each image's largest heatmap value."""

    scores: dict[str, NDArray[np.float64]]  # name -> (N,)
    largest_pixel: NDArray[np.float64]  # (N,): the largest value of each image's pixel map (model/localise.py)


def stream_scores(runtime: VAERuntime, split: ImageSplit, importance_samples: int, seed: int, *,
                  desc: str = "scoring", progress: bool = False) -> SplitScores:  # fmt: skip
    """The scores of `split`, read and scored a chunk of images at a time, so no split has to fit
    in memory; the values do not depend on the chunking (model/runtime.py)."""
    parts: list[dict[str, NDArray[np.float64]]] = []
    largest: list[NDArray[np.float64]] = []
    with tqdm(total=len(split), desc=desc, unit="img", disable=None if progress else True) as bar:
        for images in split.chunks(chunk_size(runtime.input.dims)):
            scores = runtime.score(images, importance_samples, seed)
            parts.append({name: scores[name] for name in SCORE_NAMES})
            largest.append(pixel_maps(scores.pixel_nll).reshape(len(images), -1).max(axis=1))
            bar.update(len(images))
    return SplitScores({name: np.concatenate([p[name] for p in parts]) for name in SCORE_NAMES},
                       np.concatenate(largest))  # fmt: skip


MIXTURE_REG_COVAR = 1e-4  # keeps a component finite along latent dimensions the encoder hardly uses
LATENT_BATCH = 256  # images encoded at once when computing the latent model
IMAGES_PER_COMPONENT = 10  # a mixture gets at most one component per this many training images


def fit_latent_mixture(means: NDArray[np.float64], components: int, seed: int) -> LatentMixture:
    """scikit-learn's GaussianMixture (full covariances) fitted to posterior means (N, D)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    used = max(1, min(components, len(means) // IMAGES_PER_COMPONENT))
    if used < components:
        log.warning("latent mixture: %d components for %d images, not %d", used, len(means), components)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # EM that stops at max_iter still gives a density
        gmm = GaussianMixture(used, covariance_type="full", reg_covar=MIXTURE_REG_COVAR, max_iter=500,
                              random_state=seed).fit(means)  # fmt: skip
    return LatentMixture(
        weights=gmm.weights_.tolist(),
        means=gmm.means_.tolist(),
        precisions_cholesky=gmm.precisions_cholesky_.tolist(),
        reg_covar=MIXTURE_REG_COVAR,
        seed=seed,
    )


def latent_model(runtime: VAERuntime, split: ImageSplit, config: CalibrationConfig) -> LatentStatistics:
    """The training split in latent space: statistics of its posterior means and their Gaussian
    mixture, on its first LATENT_IMAGES images (a random subset: the split is shuffled)."""
    first = ImageSplit(split.source, split.rows[:LATENT_IMAGES])
    means, log_var = posterior(runtime, first.chunks(LATENT_BATCH))  # streamed: the split may not fit in memory
    stats = posterior_statistics(means, log_var, seed=config.seed)
    return stats.model_copy(update={"mixture": fit_latent_mixture(means, config.mixture_components, config.seed)})


def with_manifest(runtime: VAERuntime, manifest: Manifest) -> VAERuntime:
    """The same graphs scored under another manifest (e.g. with new latents or calibration)."""
    return VAERuntime(Bundle(path=runtime.bundle.path, manifest=manifest), runtime.options)


def calibrate(
    runtime: VAERuntime,
    split: ImageSplit,
    reference: ImageSplit,
    config: CalibrationConfig,
    progress: bool = False,
) -> Calibration:
    """Score the calibration split; threshold the chosen score at the false-positive rate.

    The combined scores pool the p-values of `config.combine` against their scores on
    `reference` (the validation split), a split apart from the calibration split, so that a
    combined score is a fixed function of the image, calibrated here like any other score.
    The pixel threshold is the (1 - rate) quantile of the calibration images' largest heatmap
    value (model/localise.py). With n images no p-value is below 1/(n+1), so no threshold
    promises a lower false-positive rate: a warning says so, and the manifest keeps 1/(n+1).
    """
    k, seed = config.importance_samples, config.seed
    scored = stream_scores(runtime, split, k, seed, desc="calibration", progress=progress)
    reference_scores = stream_scores(runtime, reference, k, seed, desc="reference", progress=progress).scores
    combination = Combination(
        scores=list(config.combine),
        split="validation",
        split_size=len(reference),
        reference={name: np.sort(reference_scores[name]).tolist() for name in config.combine},
    )
    values = scored.scores | combined_scores(combination, scored.scores)
    for name in CALIBRATED_SCORES:
        if not np.isfinite(values[name]).all():
            raise BundleError(str(runtime.bundle.path), f"score {name} is not finite on the calibration split")
    sorted_scores = {name: np.sort(values[name]).tolist() for name in CALIBRATED_SCORES}
    calibration = Calibration(
        score=config.score,
        split_size=len(split),
        false_positive_rate=config.false_positive_rate,
        threshold=threshold_at_fpr(sorted_scores[config.score], config.false_positive_rate),
        importance_samples=k,
        seed=seed,
        scores=sorted_scores,
        combination=combination,
        pixel_threshold=threshold_at_fpr(scored.largest_pixel, config.false_positive_rate),
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
                           progress=progress).scores  # fmt: skip
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


@dataclass(frozen=True)
class Calibrated:
    """What calibrating a bundle's graphs gives: the manifest parts and the golden set."""

    manifest: Manifest  # with `latents`, `calibration` and `golden` filled in
    golden: GoldenSet
    runtime: VAERuntime  # the graphs under that manifest


def calibrate_bundle(
    runtime: VAERuntime,
    splits: dict[str, ImageSplit],
    config: CalibrationConfig,
    golden: GoldenInfo,
    progress: bool = False,
) -> Calibrated:
    """Latent model on the training split, calibration, then the golden set from the ONNX
    graphs; `golden` says how it was checked (the trainer compares it with torch first)."""
    latents = latent_model(runtime, splits["train"], config)
    runtime = with_manifest(runtime, runtime.manifest.model_copy(update={"latents": latents}))
    log.info("calibrating on %d images (K=%d)", len(splits["calibration"]), config.importance_samples)
    calibration = calibrate(runtime, splits["calibration"], splits["validation"], config, progress)
    runtime = with_manifest(runtime, runtime.manifest.model_copy(update={"calibration": calibration}))
    golden_set = compute_golden(runtime, golden_inputs(splits["test"].array(3)))
    info = golden.model_copy(update={"images": len(golden_set.images)})
    manifest = runtime.manifest.model_copy(update={"golden": info})
    return Calibrated(manifest, golden_set, with_manifest(runtime, manifest))


def recalibrate(path: Path, config: CalibrationConfig, command: str = "", progress: bool = False) -> Calibration:
    """Re-calibrate the bundle at `path` in place: latent statistics and mixture, calibration,
    golden set. The graphs are not touched; without the torch model the golden set comes from
    the ONNX graphs alone, and the manifest says so."""
    bundle = load_bundle(path)
    splits = bundle_splits(bundle.manifest)
    onnx_only = GoldenInfo(file=GOLDEN, images=0, computed_by="onnx")
    done = calibrate_bundle(scoring_runtime(path), splits, config, onnx_only, progress)
    calibration = done.manifest.calibration
    assert calibration is not None
    files = {name: (path / name).read_bytes() for name in bundle.manifest.files}
    files[GOLDEN] = golden_bytes(done.golden)
    if "MODEL_CARD.md" in files:
        when = datetime.now(UTC).isoformat(timespec="seconds")
        note = f"- Re-calibrated {when} without retraining" + (f": `{command}`.\n" if command else ".\n")
        section = report.calibration_section(calibration, done.manifest.golden, note)
        files["MODEL_CARD.md"] = report.replace_section(files["MODEL_CARD.md"].decode(), section).encode()
    write_bundle(path, done.manifest, files, force=True)
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
    poolable = [name for name in CALIBRATED_SCORES if name not in COMBINED_SCORES]
    p.add_argument(
        "--combine",
        nargs="+",
        choices=poolable,
        metavar="SCORE",
        help=f"scores the combined scores pool (default: the bundle's, else {' '.join(defaults.combine)})",
    )
    p.add_argument("--mixture-components", type=int, help="of the latent Gaussian mixture (default: the bundle's, "
                   f"else {defaults.mixture_components})")  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors, no progress bars")
    return p.parse_args(argv)


def _config(args: argparse.Namespace, manifest: Manifest) -> CalibrationConfig:
    """The bundle's own calibration settings, with the options given on top."""
    values: dict[str, object] = {}
    old = manifest.calibration
    if old is not None:
        values = {"false_positive_rate": old.false_positive_rate, "importance_samples": old.importance_samples,
                  "seed": old.seed}  # fmt: skip
        if old.score in CALIBRATED_SCORES:
            values["score"] = old.score
        if old.combination is not None:
            values["combine"] = list(old.combination.scores)
    if manifest.latents is not None and manifest.latents.mixture is not None:
        values["mixture_components"] = len(manifest.latents.mixture.weights)
    given = {"score": args.score, "false_positive_rate": args.fpr, "importance_samples": args.importance_samples,
             "seed": args.seed, "combine": args.combine, "mixture_components": args.mixture_components}  # fmt: skip
    values |= {name: value for name, value in given.items() if value is not None}
    fpr, k = values.get("false_positive_rate", 0.01), values.get("importance_samples", 1)
    if not 0 < fpr < 1:  # type: ignore[operator]
        raise ConfigError(f"--fpr must be in (0, 1), got {fpr}")
    if k < 1:  # type: ignore[operator]
        raise ConfigError(f"--importance-samples must be >= 1, got {k}")
    try:
        return CalibrationConfig.model_validate(values)
    except ValidationError as exc:
        raise config_error(exc, "calibration") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("training").setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        config = _config(args, load_bundle(args.bundle).manifest)
        command = "python -m training.calibrate " + shlex.join(sys.argv[1:] if argv is None else argv)
        cal = recalibrate(args.bundle, config, command, progress=not args.quiet)
    except (ConfigError, DataError, BundleError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"calibrated {args.bundle}: {cal.score} threshold {cal.threshold:.6g} at FPR {cal.false_positive_rate} "
        f"on {cal.split_size} images (K={cal.importance_samples}); scores kept: {', '.join(cal.scores)}; "
        f"pixel threshold {cal.pixel_threshold:.4g} nats; golden set from the ONNX graphs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A bundle's golden set: a few inputs with the latents, scores and decision they must give.

    golden = compute_golden(runtime, golden_inputs(test_images))   # at training or re-calibration
    verify_golden(runtime)                                         # at load: BundleError on a mismatch

Before any golden value is compared, `check_calibration` checks that the manifest's
calibration is one: its threshold is the conformal threshold of its own calibration scores
at its own false-positive rate (model/decision.py), of a score it holds scores for. An
edited threshold, rate or score is so refused naming manifest.json and the field, and a
golden set that no longer matches is refused naming golden.json.

The trainer writes `golden.json` into the bundle from the ONNX graphs, after checking that
its torch networks give the same numbers (training/golden.py); the service recomputes it
with the graphs and settings it will serve with, before it serves, so training and
serving cannot silently disagree: a changed weight, graph, preprocessing step, library or
execution provider that moves any value beyond the tolerance refuses the bundle, naming
the file, the image, the value and the difference.

Continuous values (latents and every score that is not combined) are recomputed and
compared within |actual - expected| <= atol + rtol |expected|. Rank-based values (the
combined scores' p-values and the decision's p-value and `is_anomaly`) are recomputed from
the golden set's own scores and the manifest's calibration, and must match exactly: a
score a hair's breadth from a calibration score may otherwise flip a rank, while a
calibration that no longer gives the recorded decision is a real difference.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, ValidationError

from model.bundle import MANIFEST, Bundle, Calibration
from model.decision import decide, threshold_at_fpr
from model.errors import BundleError
from model.preprocess import to_uint8
from model.runtime import Graphs, VAERuntime, chunk_size, combined_scores, score_images
from model.scores import COMBINED_SCORES, SCORE_NAMES

GOLDEN = "golden.json"
GOLDEN_IMPORTANCE_SAMPLES = 16
GOLDEN_SEED = 0
RTOL, ATOL = 1e-3, 1e-4  # float32 graphs on other CPUs, thread counts or providers stay well inside

F32 = NDArray[np.float32]
U8 = NDArray[np.uint8]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GoldenDecision(_Schema):
    score: str
    threshold: float | None
    p_value: float | None
    is_anomaly: bool | None


class GoldenImage(_Schema):
    label: str  # what the input is, e.g. "normal: test image 0" or "anomalous: uniform noise"
    pixels: list[int]  # the (C, H, W) image as 8-bit values, row-major: input = pixels / 255
    mean: list[float]  # (D,) posterior mean
    log_var: list[float]  # (D,)
    scores: dict[str, float | None]  # every score of SCORES; None where the score is NaN
    decision: GoldenDecision


class GoldenSet(_Schema):
    importance_samples: int
    seed: int
    rtol: float
    atol: float
    images: list[GoldenImage]


def golden_inputs(normal: F32, seed: int = GOLDEN_SEED) -> tuple[list[str], U8]:
    """Labels and 8-bit images (7, C, H, W): three normal images (the first of `normal`, which
    should be held-out normal images) and four anomalous ones made from them and a seed."""
    if len(normal) < 3:
        raise ValueError(f"a golden set needs at least 3 normal images, got {len(normal)}")
    rng = np.random.default_rng(seed)
    x = np.moveaxis(to_uint8(normal[:3]), -1, -3)  # (3, C, H, W) uint8
    _, h, w = x.shape[1:]
    square = x[1].copy()
    side = max(2, min(h, w) // 4)
    square[:, :side, :side] = 255  # a bright square in a corner
    images = np.stack([*x, 255 - x[0], square, rng.integers(0, 256, x[0].shape, dtype=np.uint8), np.zeros_like(x[0])])
    labels = ["normal: held-out image 0", "normal: held-out image 1", "normal: held-out image 2",
              "anomalous: image 0 inverted", "anomalous: image 1 with a bright square in a corner",
              "anomalous: uniform noise", "anomalous: blank"]  # fmt: skip
    return labels, images


def compute_golden(
    graphs: Graphs,
    inputs: tuple[list[str], U8],
    importance_samples: int = GOLDEN_IMPORTANCE_SAMPLES,
    seed: int = GOLDEN_SEED,
) -> GoldenSet:
    """The golden set of these graphs (ONNX or torch) for (labels, 8-bit images (N, C, H, W))."""
    labels, pixels = inputs
    images = pixels.astype(np.float32) / np.float32(255.0)
    mean, log_var = graphs.encode(images)
    batch = score_images(graphs, images, importance_samples, seed, chunk_size(int(np.prod(images.shape[1:]))))
    decision = decide(graphs.manifest.calibration, batch.scores)
    verdicts = decision.is_anomaly
    return GoldenSet(
        importance_samples=importance_samples,
        seed=seed,
        rtol=RTOL,
        atol=ATOL,
        images=[
            GoldenImage(
                label=labels[i],
                pixels=pixels[i].reshape(-1).tolist(),
                mean=mean[i].astype(float).tolist(),
                log_var=log_var[i].astype(float).tolist(),
                scores={name: _finite(batch[name][i]) for name in SCORE_NAMES},
                decision=GoldenDecision(
                    score=decision.score,
                    threshold=decision.threshold,
                    p_value=None if decision.p_values is None else float(decision.p_values[i]),
                    is_anomaly=None if verdicts is None else bool(verdicts[i]),
                ),
            )
            for i in range(len(images))
        ],
    )


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def golden_bytes(golden: GoldenSet) -> bytes:
    return golden.model_dump_json(indent=1).encode() + b"\n"


def read_golden(bundle: Bundle) -> GoldenSet | None:
    """The bundle's golden set, or None when its manifest names none."""
    info = bundle.manifest.golden
    if info is None:
        return None
    path = bundle.path / info.file
    if info.file not in bundle.manifest.files:
        raise BundleError(str(path), "the golden set is not among the manifest's checksummed files")
    try:
        return GoldenSet.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise BundleError(str(path), f"not a valid golden set ({str(exc).splitlines()[0]})") from None


def differences(expected: GoldenSet, actual: GoldenSet) -> Iterator[tuple[str, float, float, float]]:
    """Every continuous value of `actual` beyond the tolerance of `expected`'s: (what, actual,
    expected, tolerance), `what` naming the image and the value. Combined scores are left out
    (they are rank-based: `inconsistencies` checks them)."""
    for i, (e, a) in enumerate(zip(expected.images, actual.images, strict=True)):
        where = f"image {i} ({e.label})"
        pairs: list[tuple[str, float | None, float | None]] = [
            (f"latent mean[{d}]", a.mean[d], e.mean[d]) for d in range(len(e.mean))
        ]
        pairs += [(f"latent log_var[{d}]", a.log_var[d], e.log_var[d]) for d in range(len(e.log_var))]
        pairs += [(f"score {name}", a.scores.get(name), e.scores.get(name))
                  for name in SCORE_NAMES if name not in COMBINED_SCORES]  # fmt: skip
        for what, got, want in pairs:
            tolerance = expected.atol + expected.rtol * abs(want or 0.0)
            if got is None or want is None:
                if (got is None) != (want is None):
                    yield f"{where}: {what}", _nan(got), _nan(want), tolerance
            elif abs(got - want) > tolerance:
                yield f"{where}: {what}", got, want, tolerance


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def inconsistencies(golden: GoldenSet, calibration: Calibration | None) -> Iterator[tuple[str, object, object]]:
    """Rank-based values that the golden set's own scores and `calibration` no longer give:
    (what, recomputed, recorded)."""
    scores = {name: np.array([_nan(g.scores.get(name)) for g in golden.images]) for name in SCORE_NAMES}
    combined = combined_scores(calibration.combination if calibration is not None else None, scores)
    decision = decide(calibration, scores | combined)
    verdicts = decision.is_anomaly
    for i, g in enumerate(golden.images):
        where = f"image {i} ({g.label})"
        for name in COMBINED_SCORES:
            got, want = combined[name][i], _nan(g.scores.get(name))
            if not (math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(got) and math.isnan(want))):
                yield f"{where}: score {name}", float(got), want
        recomputed = GoldenDecision(
            score=decision.score,
            threshold=decision.threshold,
            p_value=None if decision.p_values is None else float(decision.p_values[i]),
            is_anomaly=None if verdicts is None else bool(verdicts[i]),
        )
        for field in GoldenDecision.model_fields:
            recorded: object = getattr(g.decision, field)
            now: object = getattr(recomputed, field)
            if now != recorded and not (
                isinstance(now, float) and isinstance(recorded, float) and math.isclose(now, recorded)
            ):
                yield f"{where}: decision {field}", now, recorded


def check_calibration(bundle: Bundle) -> None:
    """Raise BundleError naming the bundle's manifest.json and the field when its calibration
    is not self-consistent: a decision score without calibration scores, scores that are not
    `split_size` finite values in ascending order, a false-positive rate outside (0, 1), or a
    threshold that is not `threshold_at_fpr` of the decision score's calibration scores at
    the calibration's false-positive rate (exactly: it is computed so at calibration). The
    heatmap's `pixel_threshold` is stored without its calibration values, so it cannot be
    checked here. Nothing to check without a calibration."""
    cal = bundle.manifest.calibration
    if cal is None:
        return
    path = str(bundle.path / MANIFEST)
    if cal.score not in cal.scores:
        held = ", ".join(cal.scores) or "none"
        raise BundleError(path, f"calibration.score {cal.score!r} has no calibration scores "
                                f"(calibration.scores holds {held})")  # fmt: skip
    for name, values in cal.scores.items():
        array = np.asarray(values, np.float64)
        if len(values) != cal.split_size or not np.isfinite(array).all() or (np.diff(array) < 0).any():
            raise BundleError(path, f"calibration.scores.{name} is not {cal.split_size} (calibration.split_size) "
                                    "finite values in ascending order")  # fmt: skip
    if not 0.0 < cal.false_positive_rate < 1.0:
        raise BundleError(path, f"calibration.false_positive_rate {cal.false_positive_rate} is not in (0, 1)")
    expected = threshold_at_fpr(cal.scores[cal.score], cal.false_positive_rate)
    if cal.threshold != expected:
        raise BundleError(
            path,
            f"calibration.threshold {cal.threshold!r} is not the threshold of calibration.scores.{cal.score} at "
            f"calibration.false_positive_rate {cal.false_positive_rate:g}, {expected!r}: one of them was changed, "
            "or the bundle was calibrated before thresholds were conformal (re-calibrate it: "
            "python -m training.calibrate BUNDLE)",
        )


def verify_golden(runtime: VAERuntime) -> GoldenSet | None:
    """Check the runtime's bundle's calibration (`check_calibration`: BundleError naming
    manifest.json), then recompute its golden set with it; raise BundleError naming golden.json
    and the first difference beyond tolerance. None when the bundle has no golden set."""
    bundle = runtime.bundle
    check_calibration(bundle)
    golden = read_golden(bundle)
    if golden is None:
        return None
    assert bundle.manifest.golden is not None
    path = str(bundle.path / bundle.manifest.golden.file)
    spec = bundle.manifest.input
    shape = (spec.channels, spec.height, spec.width)
    if any(len(g.pixels) != math.prod(shape) for g in golden.images):
        raise BundleError(path, f"its images do not have the input shape {list(shape)}")
    pixels = np.asarray([g.pixels for g in golden.images], np.uint8).reshape(-1, *shape)
    labels = [g.label for g in golden.images]
    actual = compute_golden(runtime, (labels, pixels), golden.importance_samples, golden.seed)
    for what, got, want, tolerance in differences(golden, actual):
        raise BundleError(path, f"{what} is {got:.7g} here but {want:.7g} in the golden set "
                                f"(|difference| {abs(got - want):.3g} > tolerance {tolerance:.3g})")  # fmt: skip
    for what, now, recorded in inconsistencies(golden, bundle.manifest.calibration):
        raise BundleError(
            path, f"{what} is {now} from the golden scores and this calibration, but {recorded} in the golden set"
        )
    return golden

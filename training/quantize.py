"""Quantise a bundle to int8 with ONNX Runtime's static quantisation (QDQ), behind a quality gate.

    python -m training.quantize model/zoo/mnist-vae/1                  # writes model/zoo/mnist-vae/2
    python -m training.quantize BUNDLE --out /tmp/zoo/mnist-vae/2 --graphs both --per-tensor
    python -m training.quantize BUNDLE --max-nll-change 0.5 --max-auroc-change 0.005

The chosen graphs (default: the encoder, which is what /v1/encode runs) are quantised by
`onnxruntime.quantization.quantize_static` in QDQ format
(int8 weights; uint8 activations, which ONNX Runtime's x86 int8 kernels run fastest),
calibrated (min/max) on the float bundle's own calibration split, rebuilt from its
manifest as training/calibrate.py does: the encoder on those images, the decoder on their
posterior means, one posterior draw each and as many prior draws. Then the quality gate
compares the int8 graphs with the float ones on the same inputs and seeds, as the service
computes them (model/runtime.py):

- test negative ELBO and IWAE NLL (K of the parent's test metrics), nats per image;
- AUROC of every calibrated score against each built-in OOD set (training/evaluate.py's
  machinery: the test split as normal set, at most 500 images a set, K of the calibration).

If any metric moves by more than its tolerance (--max-nll-change nats, --max-auroc-change)
nothing is written and the command says which metric failed and by how much. Otherwise the
int8 graphs are re-calibrated (threshold and calibration scores from the int8 graphs), and
a new bundle version is written atomically: its manifest's `quantization` records the
parent (name, version, sha256 of its graphs), the method and the gate's numbers.

Exit codes: 0 written, 1 refused by the quality gate, 2 bad input.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime
from numpy.typing import NDArray
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from model.bundle import (
    Bundle,
    GoldenInfo,
    Manifest,
    ParentRef,
    QualityCheck,
    Quantization,
    SplitMetrics,
    check_output_dir,
    list_repository,
    load_bundle,
    write_bundle,
)
from model.errors import BundleError
from model.golden import GOLDEN, golden_bytes
from model.runtime import RuntimeOptions, VAERuntime, batched_scores, sample_posterior
from model.scores import CALIBRATED_SCORES, DEFAULT_SCORE
from training import report
from training.anomaly_sets import OOD_SETS, load_set
from training.calibrate import Calibrated, calibrate_bundle, split_metrics
from training.config import CalibrationConfig, ConfigError
from training.data import bundle_splits
from training.evaluate import evaluate
from training.sources import DataError, ImageSplit

log = logging.getLogger("training.quantize")  # not __name__: that is "__main__" under python -m

Graph = Literal["encoder", "decoder"]
GRAPH_INPUTS: dict[Graph, str] = {"encoder": "image", "decoder": "z"}
METHOD = "onnxruntime static QDQ int8 (min/max calibration)"
OOD_LIMIT = 500  # images per set, as `python -m training.evaluate` uses by default
CALIBRATION_BATCH = 64


@dataclass(frozen=True)
class QuantizeOptions:
    # The encoder alone by default: int8 decoders lost ~15 nats of test NLL on the shipped
    # model (bench/results/quantize.json), far past the gate, for no reliable speed-up.
    graphs: tuple[Graph, ...] = ("encoder",)
    per_channel: bool = True
    test_importance_samples: int | None = None  # K of the test NLL; None: the parent's
    ood_limit: int = OOD_LIMIT  # images per OOD set (and of the test split as their normal set)


@dataclass(frozen=True)
class Tolerances:
    nll: float = 0.5  # nats per image: test negative ELBO and IWAE NLL
    auroc: float = 0.005


class QualityGateError(Exception):
    """The int8 graphs lost more quality than the tolerances allow; nothing was written."""

    def __init__(self, failed: list[QualityCheck]) -> None:
        self.failed = failed
        reasons = "; ".join(
            f"{c.metric} changed by {c.change:+.4g} ({c.parent:.4f} -> {c.quantized:.4f}, tolerance {c.tolerance:g})"
            for c in failed
        )
        super().__init__(f"quality gate refused the int8 bundle: {reasons}")


# -- quantising one graph --------------------------------------------------------------------


class _Batches(CalibrationDataReader):  # type: ignore[misc]
    """ONNX Runtime's calibration reader over one array, in batches."""

    def __init__(self, input_name: str, data: NDArray[np.float32]) -> None:
        self._batches: Iterator[dict[str, NDArray[np.float32]]] = (
            {input_name: data[i : i + CALIBRATION_BATCH]} for i in range(0, len(data), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, NDArray[np.float32]] | None:
        return next(self._batches, None)


def _no_preprocessing_advice(record: logging.LogRecord) -> bool:
    # quantize_static advises, on the root logger, to pre-process graphs (shape inference and
    # graph optimisation) first; torch's exporter already infers every shape.
    return "pre-processing before quantization" not in record.getMessage()


def quantize_graph(graph: Path, input_name: str, data: NDArray[np.float32], per_channel: bool) -> bytes:
    """The graph at `graph` as QDQ int8 (uint8 activations), calibrated on `data`."""
    root = logging.getLogger()
    root.addFilter(_no_preprocessing_advice)
    try:
        with tempfile.TemporaryDirectory(prefix="vaeserve-quantize-") as tmp:
            out = Path(tmp) / "int8.onnx"
            quantize_static(
                graph,
                out,
                _Batches(input_name, data),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
            return out.read_bytes()
    finally:
        root.removeFilter(_no_preprocessing_advice)


def decoder_calibration_latents(runtime: VAERuntime, images: NDArray[np.float32], seed: int) -> NDArray[np.float32]:
    """Latents as the service decodes them: posterior means (reconstruct), one posterior draw
    each (score) and as many prior draws (sample); (3N, D)."""
    mean, log_var = runtime.encode(images)
    return np.concatenate([mean, sample_posterior(mean, log_var, seed), runtime.sample_latents(len(images), seed)])


# -- the quality gate ----------------------------------------------------------------------


@dataclass(frozen=True)
class GateInputs:
    """The parent's data the gate measures both models on."""

    test: NDArray[np.float32]
    normal: NDArray[np.float32]  # the first images of the test split: the OOD sets' normal set
    ood: dict[str, NDArray[np.float32]]
    test_k: int
    score_k: int
    seed: int


def gate_inputs(parent: Bundle, test: NDArray[np.float32], options: QuantizeOptions) -> GateInputs:
    m = parent.manifest
    cal = m.calibration
    if cal is None:
        raise DataError(f"bundle {m.name}:{m.version} has no calibration; run python -m training.calibrate first")
    test_metrics = next((s for s in m.metrics if s.split == "test"), None)
    test_k = options.test_importance_samples or (test_metrics.importance_samples if test_metrics else 1000)
    if test_k < 1:
        raise ConfigError(f"--importance-samples must be >= 1, got {test_k}")
    if options.ood_limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {options.ood_limit}")
    normal = test[: options.ood_limit]
    ood = {name: load_set(f"builtin:{name}", m, normal, options.ood_limit, cal.seed) for name in OOD_SETS}
    return GateInputs(test, normal, ood, test_k, cal.importance_samples, cal.seed)


@dataclass(frozen=True)
class Measured:
    test: SplitMetrics  # with the gate's K
    gate: dict[str, float]  # the gate's metrics by name: "test neg_elbo", "AUROC noise mse", ...


def measure(runtime: VAERuntime, inputs: GateInputs) -> Measured:
    """Test negative ELBO and IWAE NLL (nats), and AUROC per OOD set and calibrated score."""
    test = split_metrics(runtime, ImageSplit.of(inputs.test), "test", inputs.test_k, inputs.seed)
    normal = batched_scores(runtime, inputs.normal, inputs.score_k, inputs.seed)
    anomalies = {name: batched_scores(runtime, x, inputs.score_k, inputs.seed) for name, x in inputs.ood.items()}
    gate = {"test neg_elbo": test.neg_elbo, "test iwae_nll": test.iwae_nll}
    for row in evaluate(runtime, normal, anomalies, CALIBRATED_SCORES):
        gate[f"AUROC {row.anomaly_set} {row.score}"] = row.auroc
    return Measured(test, gate)


def quality_checks(parent: dict[str, float], quantized: dict[str, float], tolerances: Tolerances) -> list[QualityCheck]:
    return [
        QualityCheck(
            metric=name,
            parent=value,
            quantized=quantized[name],
            tolerance=tolerances.auroc if name.startswith("AUROC") else tolerances.nll,
        )
        for name, value in parent.items()
    ]


# -- the bundle ----------------------------------------------------------------------------


def next_version_dir(parent: Path) -> Path:
    """<repository>/<name>/<highest numeric version + 1>, beside the parent."""
    if not parent.name.isdigit():
        raise ConfigError(f"{parent} is not a <repository>/<name>/<version> folder: give --out")
    root = parent.parent.parent
    versions = [int(v) for (name, v) in list_repository(root) if name == parent.parent.name]
    return parent.parent / str(max([*versions, int(parent.name)]) + 1)


def quantize_bundle(
    path: Path, out: Path, options: QuantizeOptions, tolerances: Tolerances, *, force: bool = False, command: str = ""
) -> Bundle:
    """Quantise the bundle at `path`, gate it against the float graphs, and write it to `out`.

    Raises QualityGateError (nothing written) when a metric moves past its tolerance;
    BundleError, DataError or ConfigError for bad input.
    """
    parent = load_bundle(path)
    pm = parent.manifest
    if pm.quantization is not None:
        raise BundleError(str(path), "is already a quantised bundle; quantise its float parent instead")
    check_output_dir(out, force=force)
    version = out.name if out.name.isdigit() else str(int(pm.version) + 1)
    streamed = bundle_splits(pm)
    splits = {name: split.array() for name, split in streamed.items()}
    inputs = gate_inputs(parent, splits["test"], options)
    calibration_images = splits["calibration"]
    float_runtime = VAERuntime(parent, RuntimeOptions())

    data = {
        "encoder": calibration_images,
        "decoder": decoder_calibration_latents(float_runtime, calibration_images, inputs.seed),
    }
    graphs = {f"{g}.onnx": (parent.path / f"{g}.onnx").read_bytes() for g in GRAPH_INPUTS}
    for g in options.graphs:
        log.info("quantising %s.onnx on %d calibration inputs", g, len(data[g]))
        graphs[f"{g}.onnx"] = quantize_graph(parent.path / f"{g}.onnx", GRAPH_INPUTS[g], data[g], options.per_channel)

    with tempfile.TemporaryDirectory(prefix="vaeserve-int8-") as tmp:
        draft = write_bundle(Path(tmp) / "draft", pm.model_copy(update={"version": version}), graphs)
        # The int8 graphs' own latent statistics, calibration and golden set, by the parent's recipe,
        # before the gate: the latent and combined scores of the int8 encoder are meant against
        # its own latents, as they will be served.
        golden = GoldenInfo(file=GOLDEN, images=0, computed_by="onnx")
        done = calibrate_bundle(VAERuntime(load_bundle(draft.path)), streamed, _calibration_config(pm), golden)
        int8_runtime, calibration = done.runtime, done.manifest.calibration
        assert calibration is not None
        log.info("quality gate: test metrics with K=%d, OOD AUROCs with K=%d", inputs.test_k, inputs.score_k)
        parent_measured, int8_measured = measure(float_runtime, inputs), measure(int8_runtime, inputs)
        checks = quality_checks(parent_measured.gate, int8_measured.gate, tolerances)
        failed = [c for c in checks if not c.passed]
        if failed:
            raise QualityGateError(failed)
        validation_k = next((s.importance_samples for s in pm.metrics if s.split == "validation"), inputs.score_k)
        metrics = [
            split_metrics(int8_runtime, streamed["validation"], "validation", validation_k, inputs.seed),
            int8_measured.test,
        ]
        quantization = Quantization(
            method=METHOD,
            parent=ParentRef(name=pm.name, version=pm.version, sha256={f: pm.files[f].sha256 for f in graphs}),
            graphs=list(options.graphs),
            per_channel=options.per_channel,
            activation_type="uint8",
            weight_type="int8",
            calibration_images=len(calibration_images),
            onnxruntime=onnxruntime.__version__,
            quality=checks,
        )
        files = {
            **graphs,
            GOLDEN: golden_bytes(done.golden),
            **_report_files(parent, done, splits["test"], metrics, quantization, version, command),
        }
    manifest = done.manifest.model_copy(
        update={
            "version": version,
            "created": datetime.now(UTC),
            "description": f"int8 ({', '.join(options.graphs)}) of {pm.name}:{pm.version}: {pm.description}",
            "metrics": metrics,
            "quantization": quantization,
        }
    )
    return write_bundle(out, manifest, files, force=force)


def _calibration_config(parent: Manifest) -> CalibrationConfig:
    """The parent's calibration recipe (score, FPR, K, seed, combination, mixture), to run on the int8 graphs."""
    old, latents = parent.calibration, parent.latents
    assert old is not None  # gate_inputs refused a bundle without one
    config = CalibrationConfig(
        score=old.score if old.score in CALIBRATED_SCORES else DEFAULT_SCORE,
        false_positive_rate=old.false_positive_rate,
        importance_samples=old.importance_samples,
        seed=old.seed,
    )
    if old.combination is not None:
        config.combine = list(old.combination.scores)
    if latents is not None and latents.mixture is not None:
        config.mixture_components = len(latents.mixture.weights)
    return config


def _report_files(
    parent: Bundle,
    done: Calibrated,
    test: NDArray[np.float32],
    metrics: list[SplitMetrics],
    quantization: Quantization,
    version: str,
    command: str,
) -> dict[str, bytes]:
    """The parent's model card with this bundle's metrics, calibration and quantisation; images drawn anew."""
    runtime, calibration = done.runtime, done.manifest.calibration
    assert calibration is not None
    skipped = (".onnx", GOLDEN)  # the graphs and the golden set are this bundle's own
    files = {name: (parent.path / name).read_bytes() for name in parent.manifest.files if not name.endswith(skipped)}
    if "MODEL_CARD.md" in files:
        card = files["MODEL_CARD.md"].decode()
        title = f"# {parent.manifest.name} v{version}"
        card = card.replace(f"# {parent.manifest.name} v{parent.manifest.version}", title, 1)
        card = report.replace_section(card, report.metrics_section(metrics))
        card = report.replace_section(card, report.calibration_section(calibration, done.manifest.golden))
        note = f"- Made by `{command}`.\n" if command else ""
        files["MODEL_CARD.md"] = report.replace_section(card, report.quantization_section(quantization, note)).encode()
    if "samples.png" in files:
        files["samples.png"] = report.samples_png(runtime)
    if "reconstructions.png" in files:
        files["reconstructions.png"] = report.reconstructions_png(runtime, test)
    return files


# -- command line --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = Tolerances()
    p = argparse.ArgumentParser(prog="python -m training.quantize", description=__doc__.split("\n")[0])
    p.add_argument("bundle", type=Path, help="the float bundle, e.g. model/zoo/mnist-vae/1")
    p.add_argument("--out", type=Path, help="bundle directory to write (default: the next version beside BUNDLE)")
    p.add_argument(
        "--graphs", choices=["encoder", "decoder", "both"], default="encoder", help="which graphs to quantise (encoder)"
    )
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor (default: per channel)")
    nll_help = f"largest change of the test neg. ELBO and IWAE NLL allowed, nats (default {defaults.nll})"
    p.add_argument("--max-nll-change", type=float, default=defaults.nll, help=nll_help)
    auroc_help = f"largest change of each OOD AUROC allowed (default {defaults.auroc})"
    p.add_argument("--max-auroc-change", type=float, default=defaults.auroc, help=auroc_help)
    p.add_argument("--importance-samples", type=int, help="K of the test IWAE NLL (default: the parent's test K)")
    p.add_argument("--limit", type=int, default=OOD_LIMIT, help=f"images per OOD set (default {OOD_LIMIT})")
    p.add_argument("--force", action="store_true", help="replace a bundle already in --out")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("training").setLevel(logging.WARNING if args.quiet else logging.INFO)
    graphs: tuple[Graph, ...] = ("encoder", "decoder") if args.graphs == "both" else (args.graphs,)
    options = QuantizeOptions(graphs, not args.per_tensor, args.importance_samples, args.limit)
    command = "python -m training.quantize " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        if args.max_nll_change < 0 or args.max_auroc_change < 0:
            raise ConfigError("tolerances must be >= 0")
        out = args.out or next_version_dir(args.bundle)
        bundle = quantize_bundle(
            args.bundle, out, options, Tolerances(args.max_nll_change, args.max_auroc_change),
            force=args.force, command=command,
        )  # fmt: skip
    except QualityGateError as exc:
        print(f"error: {exc}; nothing was written", file=sys.stderr)
        return 1
    except (ConfigError, DataError, BundleError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    q = bundle.manifest.quantization
    assert q is not None
    worst = max(q.quality, key=lambda c: abs(c.change) / c.tolerance if c.tolerance else 0.0)
    size = sum(bundle.manifest.files[f"{g}.onnx"].bytes for g in GRAPH_INPUTS)
    print(
        f"wrote {bundle.path}: {', '.join(q.graphs)} int8 ({'per channel' if q.per_channel else 'per tensor'}), "
        f"graphs {size / 1e6:.2f} MB; {len(q.quality)} quality checks passed, closest to its tolerance: "
        f"{worst.metric} {worst.change:+.4g} (tolerance {worst.tolerance:g})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

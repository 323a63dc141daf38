"""Train a VAE and write a model bundle.

    python -m training --data mnist --epochs 50 --out models/mnist-vae/1
    python -m training --config training/configs/mnist.toml --out model/zoo/mnist-vae/1 --force
    python -m training ... --resume          # continue from the run directory's checkpoint

Exit codes: 0 done, 1 training failed (e.g. a NaN loss), 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import platform
import shlex
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

from model.bundle import (
    DatasetInfo,
    GoldenInfo,
    LikelihoodSpec,
    Manifest,
    TrainingInfo,
    check_output_dir,
    load_bundle,
    write_bundle,
)
from model.errors import BundleError
from model.golden import GOLDEN, golden_bytes
from model.runtime import VAERuntime
from training import report
from training.calibrate import calibrate_bundle, split_metrics
from training.config import ConfigError, RunConfig, load_config
from training.data import DataError, input_spec, load_dataset, split
from training.export import ExportError, export_graphs
from training.golden import GoldenMismatchError, check_torch_parity
from training.loop import Trainer, TrainingError
from training.nets import count_parameters

log = logging.getLogger("training")

_SHORTCUTS = {  # flag -> config key, for the options people change most
    "data": "data.source",
    "labels": "data.labels",
    "epochs": "train.epochs",
    "seed": "train.seed",
    "arch": "model.arch",
    "latent_dim": "model.latent_dim",
    "likelihood": "model.likelihood",
    "name": "name",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training", description="Train a VAE and write a model bundle.")
    p.add_argument("--config", type=Path, help="TOML config file ([data], [model], [train], [calibration])")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write, e.g. models/mnist-vae/1")
    p.add_argument("--data", help="'mnist' (built-in digits), an image folder, a .npz or an IDX file")
    p.add_argument("--labels", help="train on these classes only, e.g. 0 or 1,7")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--arch", choices=["conv", "mlp"])
    p.add_argument("--latent-dim", type=int)
    p.add_argument("--likelihood", choices=["bernoulli", "gaussian"])
    p.add_argument("--name", help="model name in the manifest")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override any config key")
    p.add_argument("--run-dir", type=Path, help="checkpoints (default runs/<name>/<version>)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint")
    p.add_argument("--force", action="store_true", help="replace a bundle already in --out")
    p.add_argument("--card-note", type=Path, help="markdown appended to MODEL_CARD.md")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> RunConfig:
    overrides = []
    for flag, key in _SHORTCUTS.items():
        value = getattr(args, flag)
        if value is not None:
            text = f"[{value}]" if flag == "labels" else (f'"{value}"' if isinstance(value, str) else str(value))
            overrides.append(f"{key}={text}")
    return load_config(args.config, overrides + args.set)


class TrainingInterrupted(Exception):  # noqa: N818 (not an error, a stop)
    """Ctrl-C during training; the checkpoint of the last finished epoch is on disk."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(f"interrupted: the last finished epoch is saved in {checkpoint}; rerun with --resume")


@dataclass(frozen=True)
class Splits:
    train: np.ndarray
    validation: np.ndarray
    calibration: np.ndarray
    test: np.ndarray


def run(args: argparse.Namespace) -> Path:
    """Everything from config to a written bundle; raises the domain errors main() reports."""
    config = build_config(args)
    version = args.out.name if args.out.name.isdigit() else "1"
    if not config.name:  # a bundle in <root>/<name>/<version>/ is served as <name>
        config.name = args.out.parent.name if args.out.name.isdigit() and args.out.parent.name else "vae"
        config.validate()
    check_output_dir(args.out, force=args.force)
    note = args.card_note.read_text() if args.card_note else ""
    run_dir = args.run_dir or Path("runs") / config.name / version

    dataset = load_dataset(config.data)
    indices, split_spec = split(dataset, config.data)
    split_images = {name: dataset.images[idx] for name, idx in indices.items()}
    splits = Splits(**split_images)
    log.info("data: %s, %s", dataset.source, split_spec.counts)

    torch.use_deterministic_algorithms(True)
    trainer = Trainer(
        config, torch.from_numpy(splits.train), torch.from_numpy(splits.validation), run_dir, progress=not args.quiet
    )
    if args.resume:
        trainer.resume()
    try:
        state = trainer.fit()
    except KeyboardInterrupt:
        raise TrainingInterrupted(trainer.checkpoint_path) from None
    graphs = export_graphs(trainer.model, torch.from_numpy(splits.validation[:256]))

    created = datetime.now(UTC)
    spec = input_spec(config.data)
    log_scale = trainer.model.log_scale.detach().tolist() if config.model.likelihood == "gaussian" else None
    manifest = Manifest(
        name=config.name,
        version=version,
        created=created,
        description=f"VAE trained on {dataset.source}",
        input=spec,
        latent_dim=config.model.latent_dim,
        likelihood=LikelihoodSpec(kind=config.model.likelihood, log_scale=log_scale),
        onnx_opset=graphs.opset,
        training=TrainingInfo(
            config=config.to_dict(),
            seed=config.train.seed,
            epochs_run=state.epoch,
            best_epoch=state.best_epoch,
            parameters=count_parameters(trainer.model),
            wall_seconds=round(state.wall_seconds, 1),
            library_versions={
                "python": platform.python_version(),
                "torch": torch.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
                "numpy": np.__version__,
            },
        ),
        dataset=DatasetInfo(
            source=dataset.source,
            rows=len(dataset),
            labels=config.data.labels,
            sha256=dataset.fingerprint(),
            split=split_spec,
        ),
    )
    graph_files = {"encoder.onnx": graphs.encoder, "decoder.onnx": graphs.decoder}
    with tempfile.TemporaryDirectory(prefix="vaeserve-draft-") as tmp:
        # Calibrate and draw the report through the exported graphs, as the service will.
        draft = write_bundle(Path(tmp) / "draft", manifest, graph_files)
        runtime = VAERuntime(load_bundle(draft.path))
        cal = config.calibration
        log.info("test metrics with K=%d", cal.test_importance_samples)
        metrics = [
            split_metrics(runtime, splits.validation, "validation", cal.importance_samples, cal.seed),
            split_metrics(runtime, splits.test, "test", cal.test_importance_samples, cal.seed),
        ]
        done = calibrate_bundle(runtime, split_images, cal, GoldenInfo(file=GOLDEN, images=0, computed_by="torch+onnx"))
        diffs = check_torch_parity(trainer.model, done.runtime, done.golden)
        log.info("golden set: torch and ONNX Runtime agree (largest differences %s)", diffs)
        assert done.manifest.golden is not None and done.manifest.calibration is not None
        golden = done.manifest.golden.model_copy(update={"torch_onnx_max_abs_diff": diffs})
        manifest = done.manifest.model_copy(update={"metrics": metrics, "golden": golden})
        calibration = done.manifest.calibration
        card = report.model_card(
            config=config,
            version=version,
            created=created,
            training=manifest.training,  # type: ignore[arg-type]
            dataset=manifest.dataset,  # type: ignore[arg-type]
            metrics=metrics,
            calibration=calibration,
            golden=golden,
            command="python -m training " + shlex.join(sys.argv[1:]),
            note=note,
        )
        files = {
            **graph_files,
            GOLDEN: golden_bytes(done.golden),
            "MODEL_CARD.md": card.encode(),
            "samples.png": report.samples_png(runtime),
            "reconstructions.png": report.reconstructions_png(runtime, splits.test),
            "loss_curve.png": report.loss_curve_png(state.history),
        }
    write_bundle(args.out, manifest, files, force=args.force)
    test = metrics[-1]
    print(
        f"wrote {args.out}: test neg ELBO {test.neg_elbo:.2f} nats, IWAE NLL {test.iwae_nll:.2f} nats "
        f"(K={test.importance_samples}), {test.bits_per_dim:.4f} bits/dim; "
        f"threshold {calibration.threshold:.4g} at FPR {calibration.false_positive_rate}"
    )
    return args.out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for ours in ("training", "model"):  # the exporter's libraries log a lot at INFO
        logging.getLogger(ours).setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        run(args)
    except (ConfigError, DataError, BundleError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (TrainingError, ExportError, GoldenMismatchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except TrainingInterrupted as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ninterrupted: no bundle was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train a VAE and write a model bundle.

    python -m training --data mnist --epochs 50 --out models/mnist-vae/1
    python -m training --config training/configs/mnist.toml --out model/zoo/mnist-vae/1 --force
    python -m training --data photos/ --device cuda --set train.precision='"bf16"' --out models/photos/1
    torchrun --nproc-per-node 2 -m training --data mnist --out models/mnist-vae/2   # DDP (docs/training.md)
    python -m training ... --resume          # continue from the run directory's checkpoint

Exit codes: 0 done, 1 training failed (a NaN loss, an export or a golden set on which ONNX
Runtime disagrees with torch), 2 bad input (config, data, device, output, a checkpoint
to resume that is missing or from another config), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import sys
import time
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
    SplitMetrics,
    TrainingInfo,
    check_output_dir,
    write_bundle,
)
from model.errors import BundleError
from model.golden import GOLDEN, golden_bytes
from model.runtime import chunk_size
from training import report
from training.calibrate import calibrate_bundle, scoring_runtime, split_metrics
from training.config import ConfigError, RunConfig, load_config
from training.data import default_workers, input_spec, load_source, split
from training.devices import DeviceError, check_precision, describe, make_deterministic, resolve_device
from training.distributed import Processes
from training.export import ExportError, export_graphs
from training.golden import GoldenMismatchError, check_torch_parity
from training.loop import Trainer, TrainingError
from training.nets import conv_channels, count_parameters
from training.sources import DataError, ImageSource, ImageSplit
from training.staging import remove_stale_drafts, staging_dir

log = logging.getLogger("training")

ROOT = Path(__file__).resolve().parent.parent  # the repository (or site-packages) this package lives in
_SHORTCUTS = {  # flag -> config key, for the options people change most
    "data": "data.source",
    "epochs": "train.epochs",
    "seed": "train.seed",
    "arch": "model.arch",
    "latent_dim": "model.latent_dim",
    "likelihood": "model.likelihood",
    "device": "train.device",
    "name": "name",
}
_PATH_FLAGS = ("--config", "--out", "--data", "--run-dir", "--card-note")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training", description="Train a VAE and write a model bundle.")
    p.add_argument("--config", type=Path, help="TOML config file ([data], [model], [train], [calibration])")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write, e.g. models/mnist-vae/1")
    p.add_argument("--data", help="'mnist' (built-in digits), an image folder, a .csv/.txt list, a .npz or an IDX file")
    p.add_argument("--labels", help="train on these classes only, e.g. 0 or 1,7; for folders, sub-folder names")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--arch", choices=["conv", "mlp"])
    p.add_argument("--latent-dim", type=int)
    p.add_argument("--likelihood", choices=["bernoulli", "gaussian"])
    p.add_argument("--device", help="auto (CUDA when available), cpu, cuda, cuda:N or mps")
    p.add_argument("--name", help="model name in the manifest")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override any config key")
    p.add_argument("--run-dir", type=Path, help="checkpoints (default runs/<name>/<version>)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint")
    p.add_argument("--force", action="store_true", help="replace a bundle already in --out")
    p.add_argument("--card-note", type=Path, help="markdown appended to MODEL_CARD.md")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors, no progress bars")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> RunConfig:
    overrides = []
    for flag, key in _SHORTCUTS.items():
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")  # a JSON string or number is a TOML value
    if args.labels is not None:
        overrides.append(f"data.labels={json.dumps([_label(item) for item in args.labels.split(',')])}")
    return load_config(args.config, overrides + args.set)


def _label(item: str) -> int | str:
    """A label value as a number where it is one ("3"), else a class name ("cat", "03")."""
    item = item.strip()
    return int(item) if item.isdigit() and str(int(item)) == item else item


def resolve(config: RunConfig, source: ImageSource) -> RunConfig:
    """The config with what the data decides filled in: the input spec and the conv widths."""
    raw = config.to_dict()
    spec = source.spec
    raw["data"].update(channels=spec.channels, height=spec.height, width=spec.width)
    resolved = RunConfig.from_dict(raw)
    if resolved.model.arch == "conv":
        try:
            raw["model"]["channels"] = conv_channels(resolved.model, resolved.data)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return RunConfig.from_dict(raw)


def reproduce_command(argv: list[str], world_size: int) -> str:
    """The command that made this run, with paths relative to the repository root where they
    lie in it, so it runs from the root of any checkout."""
    out: list[str] = []
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if out and out[-1] in _PATH_FLAGS:
            out.append(_portable(arg, out[-1]))
        elif eq and flag in _PATH_FLAGS:
            out.append(f"{flag}={_portable(value, flag)}")
        elif out and out[-1] == "--set" and flag == "data.source":
            text = json.loads(value) if value.startswith('"') else value
            out.append(f"data.source={json.dumps(_portable(text, '--data'))}")
        else:
            out.append(arg)
    launcher = f"torchrun --nproc-per-node {world_size} -m training" if world_size > 1 else "python -m training"
    return f"{launcher} {shlex.join(out)}"


def _portable(value: str, flag: str) -> str:
    """`value` relative to the repository root when it is a path in it."""
    path = Path(value).expanduser()
    absolute = (path if path.is_absolute() else Path.cwd() / path).resolve()
    if flag == "--data" and not absolute.exists():
        return value  # "mnist"
    try:
        return absolute.relative_to(ROOT).as_posix()
    except ValueError:
        return str(absolute)  # outside the repository: its absolute path works from the root


class TrainingInterrupted(Exception):  # noqa: N818 (not an error, a stop)
    """Ctrl-C during training; the checkpoint of the last finished epoch is on disk."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(f"interrupted: the last finished epoch is saved in {checkpoint}; rerun with --resume")


def run(args: argparse.Namespace, argv: list[str]) -> Path | None:
    """Everything from config to a written bundle (rank 0's job); raises the domain errors main() reports."""
    config = build_config(args)
    processes = Processes.from_environment()
    device = resolve_device(config.train.device, processes.local_rank, processes.local_world_size)
    check_precision(device, config.train.precision)
    version = args.out.name if args.out.name.isdigit() else "1"
    if not config.name:  # a bundle in <root>/<name>/<version>/ is served as <name>
        config.name = args.out.parent.name if args.out.name.isdigit() and args.out.parent.name else "vae"
    if processes.is_main:
        check_output_dir(args.out, force=args.force)
        remove_stale_drafts(args.out)
    note = args.card_note.read_text() if args.card_note else ""
    run_dir = args.run_dir or Path("runs") / config.name / version

    source = load_source(config.data)
    config = resolve(config, source)
    indices, split_spec = split(len(source), config.data)
    splits = {name: ImageSplit(source, rows) for name, rows in indices.items()}
    log.info("data: %s, %d images of %d x %d x %d, split %s", source.name, len(source), config.data.channels,
             config.data.height, config.data.width, split_spec.counts)  # fmt: skip
    progress = not args.quiet and processes.is_main
    fingerprint = source.fingerprint(progress) if processes.is_main else ""  # reads every row: bad files fail here

    processes = processes.start(device)
    try:
        make_deterministic(device)
        workers = default_workers(source, config.data, processes.local_world_size)
        log.info("training on %s, %d process(es), %d DataLoader worker(s) each", describe(device),
                 processes.world_size, workers)  # fmt: skip
        trainer = Trainer(config, splits["train"], splits["validation"], run_dir, processes=processes,
                          workers=workers, progress=progress)  # fmt: skip
        if args.resume:
            trainer.resume()
        try:
            state = trainer.fit()
        except KeyboardInterrupt:
            raise TrainingInterrupted(trainer.checkpoint_path) from None
    finally:
        processes.stop()
    if not processes.is_main:
        return None

    started = time.perf_counter()
    model = trainer.model.to("cpu")
    export_rows = splits["validation"] if len(splits["validation"]) else splits["train"]
    parity_rows = min(256, 4 * chunk_size(input_spec(config.data).dims))  # real inputs, at most 16 MB of them
    graphs = export_graphs(model, torch.from_numpy(export_rows.array(parity_rows)))
    log.info("exported the ONNX graphs in %.1f s", time.perf_counter() - started)

    created = datetime.now(UTC)
    log_scale = model.log_scale.detach().tolist() if config.model.likelihood == "gaussian" else None
    manifest = Manifest(
        name=config.name,
        version=version,
        created=created,
        description=f"VAE trained on {source.name}",
        input=input_spec(config.data),
        latent_dim=config.model.latent_dim,
        likelihood=LikelihoodSpec(kind=config.model.likelihood, log_scale=log_scale),
        onnx_opset=graphs.opset,
        training=TrainingInfo(
            config=config.to_dict(),
            seed=config.train.seed,
            epochs_run=state.epoch,
            best_epoch=state.best_epoch,
            parameters=count_parameters(model),
            wall_seconds=round(state.wall_seconds, 1),
            library_versions={
                "python": platform.python_version(),
                "torch": torch.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
                "numpy": np.__version__,
            },
            device=describe(device),
            world_size=processes.world_size,
        ),
        dataset=DatasetInfo(
            source=source.name,
            rows=len(source),
            labels=config.data.labels,
            sha256=fingerprint,
            fingerprint=source.fingerprint_kind,
            split=split_spec,
        ),
    )
    graph_files = {"encoder.onnx": graphs.encoder, "decoder.onnx": graphs.decoder}
    with staging_dir(args.out) as staging:  # beside --out, not in the system temp folder (training/staging.py)
        # Calibrate and draw the report through the exported graphs, as the service will.
        draft = write_bundle(staging / "draft", manifest, graph_files)
        runtime = scoring_runtime(draft.path)
        cal = config.calibration
        metrics: list[SplitMetrics] = [
            split_metrics(runtime, splits[name], name, k, cal.seed, progress)
            for name, k in (("validation", cal.importance_samples), ("test", cal.test_importance_samples))
            if len(splits[name])
        ]
        # Latent model, calibration and golden set through the graphs; then the golden set
        # again through the torch networks, which must agree (training/golden.py).
        golden_info = GoldenInfo(file=GOLDEN, images=0, computed_by="torch+onnx")
        done = calibrate_bundle(runtime, splits, cal, golden_info, progress)
        diffs = check_torch_parity(model, done.runtime, done.golden)
        log.info("golden set: torch and ONNX Runtime agree (largest differences %s)", diffs)
        assert done.manifest.golden is not None and done.manifest.calibration is not None
        golden = done.manifest.golden.model_copy(update={"torch_onnx_max_abs_diff": diffs})
        manifest = done.manifest.model_copy(update={"metrics": metrics, "golden": golden})
        calibration = done.manifest.calibration
        runtime = done.runtime
        card = report.model_card(
            config=config,
            version=version,
            created=created,
            training=manifest.training,  # type: ignore[arg-type]
            dataset=manifest.dataset,  # type: ignore[arg-type]
            metrics=metrics,
            calibration=calibration,
            golden=golden,
            command=reproduce_command(argv, processes.world_size),
            note=note,
        )
        shown = splits["test"] if len(splits["test"]) else splits["train"]
        files = {
            **graph_files,
            GOLDEN: golden_bytes(done.golden),
            "MODEL_CARD.md": card.encode(),
            "samples.png": report.samples_png(runtime),
            "reconstructions.png": report.reconstructions_png(runtime, shown.array(32)),
            "loss_curve.png": report.loss_curve_png(state.history),
        }
    write_bundle(args.out, manifest, files, force=args.force)
    log.info("calibration, metrics and reports in %.1f s", time.perf_counter() - started)
    summary = f"wrote {args.out}"
    if metrics:
        last = metrics[-1]
        summary += (f": {last.split} neg ELBO {last.neg_elbo:.2f} nats, IWAE NLL {last.iwae_nll:.2f} nats "
                    f"(K={last.importance_samples}), {last.bits_per_dim:.4f} bits/dim")  # fmt: skip
    print(f"{summary}; threshold {calibration.threshold:.4g} at FPR {calibration.false_positive_rate}")
    return args.out


def _reason(exc: Exception) -> str:
    """The error's message; for one raised in a DataLoader worker, the original message
    without the traceback torch wraps it in."""
    text = str(exc)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        return last.partition(": ")[2] or last
    return text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    main_process = int(os.environ.get("RANK", 0)) == 0
    for ours in ("training", "model"):  # the exporter's libraries log a lot at INFO
        logging.getLogger(ours).setLevel(logging.WARNING if args.quiet or not main_process else logging.INFO)
    try:
        run(args, argv)
    except (ConfigError, DataError, BundleError, DeviceError) as exc:
        # A config error is the same in every process (a resume's checkpoint is rank 0's,
        # sent to all): under torchrun, rank 0 alone says it. The others are this process's own.
        if main_process or not isinstance(exc, ConfigError):
            print(f"error: {_reason(exc)}", file=sys.stderr)
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

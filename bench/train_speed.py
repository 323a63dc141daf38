"""Training speed: 1 process against torchrun with 2, and the DataLoader from a folder against memory.

    python -m bench.train_speed    # 20 minutes on the shared 2-core machine; writes bench/results/train_speed.json

1. Training throughput, the default config (`python -m training --data mnist`: the conv VAE
   [32, 64], 4,000 training digits, batch 128) for EPOCHS epochs, one intra-op thread per
   process: one process, then `torchrun --nproc-per-node 2` (the same global batch split in
   two, DistributedDataParallel over gloo). images/s = training images / epoch wall time
   (validation included), the median over the epochs after the first; ROUNDS rounds, ABAB.
   Also images per CPU-second (the CPU time of all training processes): on a machine
   shared with other work, more processes also take a bigger share of it, which inflates
   their wall-time ratio; the CPU-time ratio says what the extra process costs.
2. DataLoader throughput, one pass over the 5,000 built-in digits as training batches (noise
   and a decoded image per row, batch 128): from memory (no worker), and from a folder of
   the same digits as PNG files with 0, 1 and 2 worker processes.

The machine is shared and noisy: compare the ratios, which come from one run.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.harness import ROOT, free_port, repo_path
from model.preprocess import encode_png
from training.config import DataConfig
from training.data import EpochShuffle, TrainingImages, loader
from training.formats import open_source
from training.sources import ImageSplit

EPOCHS = 4
ROUNDS = 2
FAST_EXPORT = [  # what follows training is not measured: keep it short
    "--set", "calibration.test_importance_samples=8", "--set", "calibration.importance_samples=8",
]  # fmt: skip


def train(processes: int, work: Path, tag: str) -> dict[str, Any]:
    """One run of the default config; epoch throughput from its checkpoint's history."""
    run_dir = work / f"run-{tag}"
    args = ["-m", "training", "--data", "mnist", "--epochs", str(EPOCHS), "--out", str(work / tag / "1"),
            "--run-dir", str(run_dir), "--set", "train.threads=1", "-q", *FAST_EXPORT]  # fmt: skip
    if processes == 1:
        cmd = [sys.executable, *args]
    else:
        rendezvous = ["--master-addr", "127.0.0.1", "--master-port", str(free_port())]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes), *rendezvous, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True, text=True)
    history = torch.load(run_dir / "checkpoint.pt", weights_only=False)["state"].history
    rates = [h["images_per_second"] for h in history]
    per_cpu = [h["images_per_second"] * h["seconds"] / h["cpu_seconds"] for h in history]
    return {"processes": processes, "epoch_images_per_second": rates, "images_per_second": statistics.median(rates[1:]),
            "images_per_cpu_second": statistics.median(per_cpu[1:])}  # fmt: skip


def loader_pass(split: ImageSplit, workers: int) -> float:
    """Images/s of one pass of training batches over `split`."""
    data = TrainingImages(split, latent_dim=16, seed=0, stream=0)
    shuffle = EpochShuffle(len(data), seed=0, rank=0, world_size=1)
    batches = loader(data, shuffle, 128, workers)
    started, seen = time.perf_counter(), 0
    for images, _ in batches:
        seen += len(images)
    return seen / (time.perf_counter() - started)


def loaders(work: Path) -> dict[str, float]:
    memory = open_source(DataConfig())
    labels = memory.labels
    assert labels is not None
    everything = np.arange(len(memory), dtype=np.int64)
    folder = work / "digits"
    for label in range(10):
        (folder / str(label)).mkdir(parents=True)
    for row, image in enumerate(memory.read(everything)):
        (folder / str(labels[row]) / f"{row:05d}.png").write_bytes(encode_png(image))
    files = open_source(DataConfig(source=str(folder)))
    results = {"memory, 0 workers": loader_pass(ImageSplit(memory, everything), 0)}
    for workers in (0, 1, 2):
        results[f"folder of PNGs, {workers} workers"] = loader_pass(ImageSplit(files, everything), workers)
    return results


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "load_average": os.getloadavg()}  # fmt: skip


def main() -> int:
    command = "python -m bench.train_speed"
    print(f"$ {command}", flush=True)
    started, at_start = datetime.now(UTC), machine()
    with tempfile.TemporaryDirectory(prefix="vaeserve-train-speed-") as tmp:
        work = Path(tmp)
        runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        for round_ in range(ROUNDS):
            for processes in (1, 2):
                run = train(processes, work, f"p{processes}-r{round_}")
                runs[processes].append(run)
                print(f"{processes} process(es): {run['images_per_second']:.0f} images/s", flush=True)
        loader_rates = loaders(work)
    one = statistics.median(r["images_per_second"] for r in runs[1])
    two = statistics.median(r["images_per_second"] for r in runs[2])
    one_cpu = statistics.median(r["images_per_cpu_second"] for r in runs[1])
    two_cpu = statistics.median(r["images_per_cpu_second"] for r in runs[2])
    memory = loader_rates["memory, 0 workers"]
    report = {
        "command": command,
        "started": started.isoformat(),
        "machine_at_start": at_start,
        "machine_at_end": machine(),
        "training": {
            "config": "python -m training --data mnist (defaults), train.threads=1 per process",
            "epochs": EPOCHS,
            "runs": {str(k): v for k, v in runs.items()},
            "images_per_second": {"1 process": one, "torchrun, 2 processes": two},
            "ratio_2_over_1": two / one,
            "images_per_cpu_second": {"1 process": one_cpu, "torchrun, 2 processes": two_cpu},
            "cpu_ratio_2_over_1": two_cpu / one_cpu,
        },
        "data_loader": {
            "images_per_second": loader_rates,
            "ratio_to_memory": {name: rate / memory for name, rate in loader_rates.items()},
        },
        "script": repo_path(Path(__file__)),
    }
    out = ROOT / "bench" / "results" / "train_speed.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n$ {command}\n")
    print(f"training, default config: 1 process {one:.0f} images/s, torchrun 2 processes {two:.0f} images/s "
          f"({two / one:.2f}x); per CPU-second {one_cpu:.0f} and {two_cpu:.0f} ({two_cpu / one_cpu:.2f}x)")  # fmt: skip
    for name, rate in loader_rates.items():
        print(f"DataLoader, {name}: {rate:,.0f} images/s ({rate / memory:.2f}x memory)")
    print(f"load average at start {at_start['load_average'][0]:.2f}; wrote {repo_path(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""torchrun: DistributedDataParallel in 2 processes and on 2 "nodes", checkpoints across world sizes.

Each run continues the session's 1-process run (`trained`, 2 epochs on 300 digits) for one
more epoch, so resuming a checkpoint into another world size is part of every run here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.harness import free_port
from model.bundle import Bundle, load_bundle
from tests.helpers import TINY_ARGS

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TIMEOUT_S = 300  # a hang guard for a loaded 2-core machine; a run takes about 30 s


def _args(data: Path, out: Path, run_dir: Path, epochs: int) -> list[str]:
    return ["-m", "training", "--data", str(data), "--epochs", str(epochs), "--out", str(out),
            "--run-dir", str(run_dir), "--name", "digits", "--resume", *TINY_ARGS]  # fmt: skip


def _history(run_dir: Path) -> list[dict[str, float]]:
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["state"].history


def _copy_run(trained: tuple[Bundle, Path], to: Path) -> Path:
    shutil.copytree(trained[1], to)
    return to


def _check(procs: list[subprocess.Popen[str]]) -> None:
    outputs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, f"{out}\n{err}"


@pytest.fixture(scope="module")
def two_processes(trained: tuple[Bundle, Path], digits_npz: Path, tmp_path_factory) -> tuple[Path, Path]:
    """torchrun --nproc-per-node 2, resuming the 1-process checkpoint for epoch 3: (bundle, run dir)."""
    root = tmp_path_factory.mktemp("ddp")
    run_dir = _copy_run(trained, root / "run")
    rendezvous = ["--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    cmd = [*TORCHRUN, *rendezvous, *_args(digits_npz, root / "digits" / "1", run_dir, 3)]
    _check([subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)])
    return root / "digits" / "1", run_dir


def test_two_processes_train_and_only_rank_0_writes(two_processes: tuple[Path, Path], trained) -> None:
    out, run_dir = two_processes
    manifest = load_bundle(out).manifest
    assert (manifest.training.world_size, manifest.training.epochs_run) == (2, 3)
    assert manifest.training.device == "cpu"
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt"]  # no rank wrote a second file
    assert sorted(p.name for p in out.parent.iterdir()) == ["1"]  # one bundle, no leftovers
    card = (out / "MODEL_CARD.md").read_text()
    assert "on cpu in 2 processes" in card and "`torchrun --nproc-per-node 2 -m training --data" in card
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert saved["world_size"] == 2
    assert _history(run_dir)[:2] == _history(trained[1])  # resumed from the 1-process checkpoint


def test_two_processes_follow_the_one_process_recipe(two_processes, trained, digits_npz: Path, tmp_path: Path) -> None:
    """Same global batches, same noise: 2 processes differ from 1 only by float rounding."""
    from training.__main__ import main

    run_dir = _copy_run(trained, tmp_path / "run")
    assert main(_args(digits_npz, tmp_path / "one" / "1", run_dir, 3)[2:]) == 0
    one, two = _history(run_dir)[2], _history(two_processes[1])[2]
    assert one["train_loss"] == pytest.approx(two["train_loss"], rel=1e-5)
    assert one["val_neg_elbo"] == pytest.approx(two["val_neg_elbo"], rel=1e-5)


def test_two_nodes_give_the_same_bundle(two_processes, trained, digits_npz: Path, tmp_path: Path) -> None:
    """Two torchrun launches on 127.0.0.1 as node ranks 0 and 1, rendezvous over c10d: a rerun
    with another layout of the same 2 processes writes the same graphs, bit for bit."""
    run_dir = _copy_run(trained, tmp_path / "run")
    out = tmp_path / "digits" / "1"
    endpoint = f"127.0.0.1:{free_port()}"
    procs = []
    for node in (0, 1):
        rendezvous = ["--nnodes", "2", "--node-rank", str(node), "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                      "--rdzv-endpoint", endpoint, "--rdzv-id", "vaeserve-test"]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        cmd = [*TORCHRUN, *rendezvous, *_args(digits_npz, out, run_dir, 3)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    _check(procs)
    two_nodes, two_procs = load_bundle(out).manifest, load_bundle(two_processes[0]).manifest
    assert two_nodes.training.world_size == 2
    for name in ("encoder.onnx", "decoder.onnx"):
        assert two_nodes.files[name].sha256 == two_procs.files[name].sha256
    assert two_nodes.calibration == two_procs.calibration and two_nodes.metrics == two_procs.metrics


def test_a_two_process_checkpoint_resumes_in_one_process(two_processes, digits_npz: Path, tmp_path: Path) -> None:
    from training.__main__ import main

    run_dir = tmp_path / "run"
    shutil.copytree(two_processes[1], run_dir)
    assert main(_args(digits_npz, tmp_path / "m" / "1", run_dir, 4)[2:]) == 0
    manifest = load_bundle(tmp_path / "m" / "1").manifest
    assert (manifest.training.world_size, manifest.training.epochs_run) == (1, 4)
    assert _history(run_dir)[:3] == _history(two_processes[1])


def test_bad_input_under_torchrun_is_said_once_with_exit_code_2(digits_npz: Path, tmp_path: Path) -> None:
    """A batch that does not split over the processes: both exit 2, and rank 0 alone says why."""
    rendezvous = ["--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    args = ["-m", "training", "--data", str(digits_npz), "--epochs", "1", "--out", str(tmp_path / "m" / "1"),
            "--run-dir", str(tmp_path / "run"), *TINY_ARGS, "--set", "train.batch_size=15"]  # fmt: skip
    proc = subprocess.run([*TORCHRUN, *rendezvous, *args], capture_output=True, text=True, timeout=TIMEOUT_S)
    message = "error: train.batch_size 15 must be divisible by the 2 processes"
    assert proc.returncode != 0 and proc.stderr.count(message) == 1, proc.stderr
    assert proc.stderr.count("exitcode  : 2") >= 1  # torchrun's report of the first failed process
    assert not (tmp_path / "m").exists()

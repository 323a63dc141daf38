"""`python -m training` end to end: a real bundle, determinism, resume, Ctrl-C, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import training.__main__ as cli
from model.bundle import Bundle, load_bundle
from model.decision import threshold_at_fpr
from tests.helpers import TINY_ARGS


def _train(out: Path, data: Path, *extra: str, epochs: int = 2, run_dir: Path | None = None) -> int:
    run_dir = run_dir or out.parent / f"{out.name}.run"
    return cli.main(["--data", str(data), "--epochs", str(epochs), "--out", str(out), "--run-dir", str(run_dir),
                     "--name", "digits", *TINY_ARGS, *extra])  # fmt: skip


def test_bundle_is_complete_and_self_describing(bundle: Bundle) -> None:
    m = bundle.manifest
    assert set(m.files) == {"encoder.onnx", "decoder.onnx", "MODEL_CARD.md", "samples.png",
                            "reconstructions.png", "loss_curve.png", "golden.json"}  # fmt: skip
    assert (m.name, m.version, m.latent_dim, m.likelihood.kind) == ("digits", "1", 4, "bernoulli")
    assert m.dataset.rows == 300 and m.dataset.split.counts == {
        "test": 60,
        "calibration": 60,
        "validation": 30,
        "train": 150,
    }
    assert m.training.epochs_run == 2 and m.training.library_versions["torch"] == torch.__version__
    test = next(s for s in m.metrics if s.split == "test")
    assert test.importance_samples == 16 and np.isfinite([test.neg_elbo, test.iwae_nll]).all()
    assert test.neg_elbo == pytest.approx(test.reconstruction + test.kl)
    cal = m.calibration
    assert cal.split_size == 60 and cal.scores["neg_elbo"] == sorted(cal.scores["neg_elbo"])
    assert cal.threshold == threshold_at_fpr(cal.scores[cal.score], cal.false_positive_rate)
    card = (bundle.path / "MODEL_CARD.md").read_text()
    assert f"{test.iwae_nll:.2f} (K=16)" in card and "python -m training" in card
    assert (m.training.device, m.training.world_size, m.dataset.fingerprint) == ("cpu", 1, "array")
    # 60 calibration images cannot promise FPR 0.01: the smallest p-value is 1/61, and the card says so.
    assert cal.smallest_p_value == pytest.approx(1 / 61)
    assert "**Warning**: 60 calibration images are too few for a false-positive rate of 0.01" in card
    assert "about 0.0164; calibrate on at least 99 images" in card
    for name in ("samples.png", "reconstructions.png"):
        with Image.open(bundle.path / name) as image:
            assert image.size == (8 * 30 + 2, 8 * 30 + 2)
    assert test.kl > 1.0  # the tiny model learned to use its latents


def test_same_seed_same_bundle(bundle: Bundle, digits_npz: Path, tmp_path: Path) -> None:
    assert _train(tmp_path / "again" / "1", digits_npz) == 0
    again = load_bundle(tmp_path / "again" / "1").manifest
    for name in ("encoder.onnx", "decoder.onnx"):
        assert again.files[name].sha256 == bundle.manifest.files[name].sha256
    assert again.calibration == bundle.manifest.calibration


def test_resume_gives_the_uninterrupted_result(bundle: Bundle, digits_npz: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert _train(tmp_path / "one" / "1", digits_npz, epochs=1, run_dir=run_dir) == 0
    assert _train(tmp_path / "two" / "1", digits_npz, "--resume", epochs=2, run_dir=run_dir) == 0
    resumed = load_bundle(tmp_path / "two" / "1").manifest
    assert resumed.training.epochs_run == 2
    assert resumed.files["decoder.onnx"].sha256 == bundle.manifest.files["decoder.onnx"].sha256


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_keeps_a_checkpoint_and_writes_no_bundle(digits_npz: Path, tmp_path: Path) -> None:
    out, run_dir = tmp_path / "m" / "1", tmp_path / "run"
    cmd = [sys.executable, "-m", "training", "--data", str(digits_npz), "--epochs", "500", "--out", str(out),
           "--run-dir", str(run_dir), "--name", "digits", *[a for a in TINY_ARGS if a != "-q"]]  # fmt: skip
    # A runner started in the background (`make test &`, nohup, CI) hands its children SIGINT
    # ignored: give the child the default disposition, as a terminal's Ctrl-C would find it.
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoint.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=180)  # a hang guard, generous for a loaded machine
    assert proc.returncode == 130, stderr
    assert f"the last finished epoch is saved in {run_dir / 'checkpoint.pt'}; rerun with --resume" in stderr
    assert "INFO training.loop: epoch 1:" in stderr and "%|" not in stderr  # a pipe gets the log, no progress bars
    assert not out.exists() and (run_dir / "checkpoint.pt").exists()
    done = torch.load(run_dir / "checkpoint.pt", weights_only=False)["state"].epoch
    assert _train(out, digits_npz, "--resume", epochs=done + 1, run_dir=run_dir) == 0
    assert load_bundle(out).manifest.training.epochs_run == done + 1


def test_a_run_killed_after_export_leaves_its_draft_beside_the_output_and_the_next_run_removes_it(
    digits_npz: Path, tmp_path: Path
) -> None:
    """kill -9 while the draft bundle is being calibrated: nothing in the system temp folder,
    one `.1.partial-<pid>` beside the output, which the next run to that output removes."""
    out, system_tmp = tmp_path / "m" / "1", tmp_path / "tmp"
    system_tmp.mkdir()
    cmd = [sys.executable, "-m", "training", "--data", str(digits_npz), "--epochs", "1", "--out", str(out),
           "--run-dir", str(tmp_path / "run"), "--name", "digits", *TINY_ARGS]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(system_tmp)})
    draft = out.parent / f".1.partial-{proc.pid}" / "draft" / "manifest.json"
    deadline = time.monotonic() + 180  # a hang guard for a loaded machine
    while not draft.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.kill()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and draft.exists(), stderr
    assert not out.exists() and not list(system_tmp.glob("vaeserve-*"))
    assert _train(out, digits_npz, epochs=1) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["1", "1.run"]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    digits_npz: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    real = cli.Trainer._train_epoch

    def poisoned(self, epoch: int) -> float:
        if epoch == 1:
            for p in self.model.decoder.parameters():
                p.data.fill_(float("nan"))
        return real(self, epoch)

    monkeypatch.setattr(cli.Trainer, "_train_epoch", poisoned)
    out, run_dir = tmp_path / "m" / "1", tmp_path / "run"
    assert _train(out, digits_npz, epochs=3, run_dir=run_dir) == 1
    err = capsys.readouterr().err
    assert "error: loss became nan at epoch 2, batch 1; the last good checkpoint (epoch 1) is kept in" in err
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["state"].epoch == 1
    assert not out.exists()


def test_a_failed_export_writes_no_bundle(digits_npz: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    def broken(*args, **kwargs):
        raise cli.ExportError("ONNX Runtime disagrees with torch on mean")

    monkeypatch.setattr(cli, "export_graphs", broken)
    assert _train(tmp_path / "m" / "1", digits_npz, epochs=1) == 1
    assert "error: ONNX Runtime disagrees with torch on mean" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["1.run"]  # the checkpoint, no bundle


def test_existing_bundle_needs_force(bundle: Bundle, digits_npz: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "m" / "1"
    out.mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps({"keep": "me"}))
    assert _train(out, digits_npz) == 2
    assert "already holds a bundle; pass --force to replace it" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text()) == {"keep": "me"}
    assert _train(out, digits_npz, "--force", epochs=1) == 0
    assert load_bundle(out).manifest.name == "digits"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "nowhere", "error: dataset not found"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "error: no images"),
        (lambda p: (p / "bad").mkdir() or ((p / "bad" / "x.png").write_bytes(b"oops") and p / "bad"),
         r"error: cannot read image .*x.png: not a decodable image"),
    ],
)  # fmt: skip
def test_bad_data_exits_2_with_a_message(tmp_path: Path, make, message: str, capsys) -> None:
    assert _train(tmp_path / "m" / "1", make(tmp_path)) == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "m").exists()  # a failed run leaves no empty folder behind


def test_labels_name_class_folders_and_errors_list_them(tmp_path: Path, capsys) -> None:
    from tests.helpers import png_bytes, real_digits

    images, _ = real_digits(6)
    for i, image in enumerate(images):
        (tmp_path / "data" / "357"[i % 3]).mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "357"[i % 3] / f"{i}.png").write_bytes(png_bytes(image))
    assert _train(tmp_path / "m" / "1", tmp_path / "data", "--labels", "4,5") == 2
    err = capsys.readouterr().err
    assert "error: no class named '4' in " in err and err.rstrip().endswith("(classes: 3, 5, 7)")
    assert not (tmp_path / "m").exists()
    assert cli.build_config(cli.parse_args(["--out", "x/1", "--labels", "3,cats,03"])).data.labels == [3, "cats", "03"]


def test_reproduce_command_runs_from_the_repository_root(monkeypatch) -> None:
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root / "docs")
    argv = ["--config", "../training/configs/mnist.toml", f"--out={root}/model/zoo/x/1", "--data", "mnist",
            "--set", f'data.source="{root}/tests"', "--run-dir", "/elsewhere/run", "--seed", "3"]  # fmt: skip
    assert cli.reproduce_command(argv, 1) == (
        "python -m training --config training/configs/mnist.toml --out=model/zoo/x/1 --data mnist "
        "--set 'data.source=\"tests\"' --run-dir /elsewhere/run --seed 3"
    )
    assert cli.reproduce_command(["--data", "mnist"], 4) == "torchrun --nproc-per-node 4 -m training --data mnist"


def test_progress_bars_on_a_terminal_only(digits_npz: Path, tmp_path: Path) -> None:
    """Every long phase shows a bar with its rate on a terminal (the Ctrl-C test checks a pipe gets none)."""
    import fcntl
    import pty
    import struct
    import termios

    args = ["--data", str(digits_npz), "--epochs", "1", "--run-dir", str(tmp_path / "run"), "--name", "digits",
            *[a for a in TINY_ARGS if a != "-q"]]  # fmt: skip
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # a terminal 160 columns wide
    proc = subprocess.Popen([sys.executable, "-m", "training", "--out", str(tmp_path / "tty" / "1"), *args],
                            stdout=follower, stderr=follower)  # fmt: skip
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the run is over
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=300) == 0, seen.decode(errors="replace")[-2000:]
    text = seen.decode(errors="replace")
    for bar in ("fingerprint", "epochs", "calibration", "validation K=8", "test K=16"):
        assert bar in text, bar
    assert "img/s" in text and "<00:00" in text  # rates and ETA


def test_unwritable_output_exits_2(digits_npz: Path, tmp_path: Path, capsys) -> None:
    target = Path("/sys/vaeserve-test/m/1") if os.geteuid() == 0 else tmp_path / "ro" / "m" / "1"
    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir(mode=0o500)
    assert _train(target, digits_npz) == 2
    assert "cannot write there" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "cuda"], "error: --device cuda: torch sees no CUDA device here (torch 2."),
        (["--device", "cuda:1"], "error: --device cuda:1: torch sees no CUDA device here"),
        (
            ["--set", 'train.precision="fp16"', "--device", "cpu"],
            "error: train.precision=fp16 needs a CUDA device; on cpu use fp32",
        ),
        (["--device", "tpu"], "error: train.device: String should match pattern"),
    ],
)
def test_a_device_that_is_not_here_exits_2(digits_npz: Path, tmp_path: Path, capsys, args, message: str) -> None:
    assert _train(tmp_path / "m" / "1", digits_npz, *args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_bf16_autocast_still_exports_float32_graphs_that_pass_parity(digits_npz: Path, tmp_path: Path) -> None:
    import onnx

    out = tmp_path / "bf16" / "1"
    assert _train(out, digits_npz, "--set", 'train.precision="bf16"', epochs=1) == 0  # parity gate passed
    manifest = load_bundle(out).manifest
    assert manifest.training.config["train"]["precision"] == "bf16" and "(bf16)" in (out / "MODEL_CARD.md").read_text()
    half = {onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    for name in ("encoder.onnx", "decoder.onnx"):
        graph = onnx.load(out / name).graph
        assert {t.type.tensor_type.elem_type for t in [*graph.input, *graph.output]} == {onnx.TensorProto.FLOAT}
        assert not {i.data_type for i in graph.initializer} & half, name  # the weights stayed float32
        casts = [a.i for node in graph.node if node.op_type == "Cast" for a in node.attribute if a.name == "to"]
        assert not set(casts) & half, name


def test_bad_config_exits_2(digits_npz: Path, tmp_path: Path, capsys) -> None:
    assert _train(tmp_path / "m" / "1", digits_npz, "--set", "model.depth=3") == 2
    assert "error: unknown config key model.depth" in capsys.readouterr().err


def test_resume_without_a_checkpoint_exits_2(digits_npz: Path, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    assert _train(tmp_path / "m" / "1", digits_npz, "--resume", run_dir=run_dir) == 2
    err = capsys.readouterr().err
    assert err == f"error: no checkpoint to resume from at {run_dir / 'checkpoint.pt'}\n"
    assert not (tmp_path / "m").exists()


def test_resume_with_another_config_exits_2_naming_the_keys(trained, digits_npz: Path, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(trained[1], run_dir)
    code = _train(tmp_path / "m" / "1", digits_npz, "--resume", "--set", "model.latent_dim=8", "--set", "train.lr=0.01",
                  epochs=3, run_dir=run_dir)  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err == (
        f"error: checkpoint {run_dir / 'checkpoint.pt'} was made with a different config: "
        "model.latent_dim 8 here, 4 in the checkpoint; train.lr 0.01 here, 0.003 in the checkpoint\n"
    )


def test_gaussian_mlp_bundle_end_to_end(digits_npz: Path, tmp_path: Path) -> None:
    from model.runtime import VAERuntime

    out = tmp_path / "g" / "1"
    assert _train(out, digits_npz, "--arch", "mlp", "--likelihood", "gaussian", epochs=2) == 0
    bundle = load_bundle(out)
    likelihood = bundle.manifest.likelihood
    assert likelihood.kind == "gaussian" and len(likelihood.log_scale) == 1
    assert likelihood.log_scale[0] != -2.0  # learned, not the initial value
    # The manifest's test metrics, recomputed from its own split recipe with the service's runtime.
    split = bundle.manifest.dataset.split
    perm = np.random.default_rng(split.seed).permutation(bundle.manifest.dataset.rows)
    images = np.load(digits_npz)["images"][perm[: split.counts["test"]], None].astype(np.float32) / 255.0
    test = next(s for s in bundle.manifest.metrics if s.split == "test")
    scores = VAERuntime(bundle).score(images, importance_samples=test.importance_samples, seed=0)
    assert scores["iwae_nll"].mean() == pytest.approx(test.iwae_nll, rel=1e-9)
    assert scores["neg_elbo"].mean() == pytest.approx(test.neg_elbo, rel=1e-9)


def test_the_name_defaults_to_the_repository_folder(digits_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "repo" / "sevens" / "3"
    code = cli.main(
        ["--data", str(digits_npz), "--epochs", "1", "--out", str(out), "--run-dir", str(tmp_path / "r"), *TINY_ARGS]
    )
    assert code == 0
    manifest = load_bundle(out).manifest
    assert (manifest.name, manifest.version) == ("sevens", "3")

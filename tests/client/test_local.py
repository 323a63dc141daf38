"""serve, train and evaluate: passed through to their modules, imported only when they run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click import ClickException

from bench import harness
from bench.harness import PORT
from client import VAEClient
from client.local import MissingExtraError, _entry_point

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "onnx", "onnxruntime", "fastapi", "starlette", "uvicorn", "training", "PIL", "app", "model")


def python(code: str) -> subprocess.CompletedProcess[str]:
    env = harness.without_settings(PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_client_and_the_cli_import_neither_torch_nor_the_server_nor_the_model() -> None:
    done = python(
        "import json, sys; import client, client.cli; from client.cli import main; main(['--help']); main(['score', '--help']); "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_train_passes_its_arguments_through() -> None:
    done = python("import sys; from client.cli import main; sys.exit(main(['train', '--help']))")
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m training")
    bad = python("import sys; from client.cli import main; sys.exit(main(['train', '--epochs', 'x']))")
    assert bad.returncode == 2 and "argument --epochs: invalid int value: 'x'" in bad.stderr


def test_train_without_torch_says_what_to_install() -> None:
    done = python(
        "import sys; sys.modules['torch'] = None; from client.cli import main; sys.exit(main(['train', '--help']))"
    )
    assert done.returncode == 2
    assert (
        done.stderr
        == "error: vaeserve train needs the training extras, which are not installed (no module torch); install them with: pip install 'vaeserve[train]'\n"
    )


def test_a_missing_command_module_is_a_clear_error() -> None:
    with pytest.raises(
        MissingExtraError, match=r"vaeserve evaluate is not available: this installation has no training\.nothing$"
    ):
        _entry_point("training.nothing", "vaeserve evaluate")
    assert issubclass(MissingExtraError, ClickException) and MissingExtraError.exit_code == 2
    done = python("import sys; from client.cli import main; sys.exit(main(['evaluate', '--help']))")
    if importlib.util.find_spec("training.evaluate") is None:  # built on another branch
        assert (done.returncode, done.stderr) == (
            2,
            "error: vaeserve evaluate is not available: this installation has no training.evaluate\n",
        )
    else:
        assert done.returncode == 0 and "usage:" in done.stdout


def test_serve_runs_the_server(repository: Path) -> None:
    argv = [sys.executable, "-m", "client", "serve", "--repository", str(repository), "--port", PORT,
            "--default-model", "other", "--log-level", "warning"]  # fmt: skip
    with harness.serve(argv, env=harness.without_settings(PYTHONPATH=str(ROOT))) as live, VAEClient(live.url) as vae:
        assert [m.name for m in vae.models().models if m.default] == ["other"]


def test_the_console_script_in_a_serving_install_without_torch(
    base_install: Path, live_url: str, tmp_path: Path
) -> None:
    script = base_install.parent / "vaeserve"
    env = harness.without_settings(VAESERVE_URL=live_url)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(script), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    assert run("health").stdout.startswith("ready: digits:1")
    assert run("sample", "-n", "4", "-o", "grid.png").returncode == 0 and (
        tmp_path / "grid.png"
    ).read_bytes().startswith(b"\x89PNG")
    for command in ("train", "evaluate"):  # one line and exit 2, even for --help
        done = run(command, "--help")
        assert done.returncode == 2 and done.stdout == "", done.stderr
        assert done.stderr.startswith(f"error: vaeserve {command} needs the training extras, which are not installed")
        assert done.stderr.endswith("; install them with: pip install 'vaeserve[train]'\n")
        assert done.stderr.count("\n") == 1

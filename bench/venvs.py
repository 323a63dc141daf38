"""Virtual environments for benchmark peers: one per peer, pinned requirements, made once.

    python = ensure_venv(ROOT / "runs" / "peer-venvs" / "mlserver", ["mlserver==1.7.1"])

A venv is reused while its `requirements.txt` stamp matches the pins asked for, and is
made anew (pip from PyPI, through pip's own configuration) when they differ. A failed
install raises VenvError with the tail of pip's output, so a caller can report that one
peer and go on.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

STAMP = "requirements.txt"
INSTALL_TIMEOUT_S = 1800.0


class VenvError(RuntimeError):
    """A virtual environment could not be made or installed."""


def ensure_venv(
    path: Path, requirements: list[str], *, base_python: str = sys.executable, timeout_s: float = INSTALL_TIMEOUT_S
) -> Path:
    """The venv's python at `path`, with exactly `requirements` installed; made if needed."""
    python = path / "bin" / "python"
    wanted = f"# base: {base_python}\n" + "\n".join(requirements) + "\n"
    stamp = path / STAMP
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    _run([base_python, "-m", "venv", str(path)], timeout_s, f"cannot make a venv with {base_python}")
    _run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
        timeout_s,
        f"pip install {' '.join(requirements)} failed",
    )
    stamp.write_text(wanted)  # last: a half-made venv has no stamp and is made again next time
    return python


def _run(argv: list[str], timeout_s: float, what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VenvError(f"{what}: {exc}") from None
    if done.returncode != 0:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line and "is ignored" not in line]
        tail = "\n".join(lines[-15:])  # without pip's notes on find-links folders it skips
        raise VenvError(f"{what} (exit {done.returncode}):\n{tail}")

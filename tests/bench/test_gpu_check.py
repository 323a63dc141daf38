"""bench/gpu_check.sh needs an NVIDIA GPU; without one it measures nothing and says so."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bench.harness import ROOT

SCRIPT = ROOT / "bench" / "gpu_check.sh"


def test_the_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU: run the script itself")
def test_without_a_gpu_it_says_nothing_was_measured() -> None:
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == "gpu_check: no NVIDIA GPU here (nvidia-smi finds none): nothing measured"

"""bench/harness.py: servers are stopped with everything they started, and results name files
relative to the repository, never by this machine's paths."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import ROOT, descendants, repo_path, stop

# A parent that starts a child which outlives it, as LitServe's workers did.
PARENT = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print("started", flush=True)
time.sleep(60)
"""


def test_stop_ends_the_descendants_too() -> None:
    with subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stdout.readline() == b"started\n"
        deadline = time.monotonic() + 10
        while not (children := descendants(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(children) == 1
        stop(proc)
    assert proc.returncode is not None
    assert not Path(f"/proc/{children[0]}").exists() or "Z" in Path(f"/proc/{children[0]}/stat").read_text().split()[2]


def test_repo_path() -> None:
    assert repo_path(ROOT / "model" / "zoo" / "mnist-vae" / "1") == "model/zoo/mnist-vae/1"
    temporary = Path(tempfile.gettempdir()) / "vaeserve-load-x1y2" / "repository" / "big-vae" / "1"
    assert repo_path(temporary) == "<tmp>/repository/big-vae/1"
    assert repo_path("/somewhere/else/bundle") == "bundle"


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_stored_results_hold_no_absolute_path() -> None:
    for path in sorted((ROOT / "bench" / "results").glob("*.json")):
        absolute = [s for s in _strings(json.loads(path.read_text())) if s.startswith("/")]
        assert not absolute, f"{path.name}: {absolute[:3]}"

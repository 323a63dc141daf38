"""bench/harness.py: servers are stopped with everything they started."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.harness import descendants, stop

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

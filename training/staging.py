"""Where a training run stages its bundle: a hidden sibling of the output folder.

The draft bundle (graphs written once so that calibration and the reports run through ONNX
Runtime, as the service will) lives in `<parent>/.<name>.partial-<pid>` next to `--out`,
not in the system temp folder: the draft is as large as the bundle, the output's disk is
the one sized for bundles, and what a crash leaves behind is in plain sight, named for what
it is. The run removes it when it ends, however it ends; a run killed outright (kill -9,
out of memory) cannot, so the next run writing to the same `--out` removes the drafts of
processes that are gone.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def partial_dir(out: Path, pid: int) -> Path:
    """The staging folder of process `pid` for the bundle `out`."""
    return out.parent / f".{out.name}.partial-{pid}"


def remove_stale_drafts(out: Path) -> list[Path]:
    """Remove the `.<name>.partial-<pid>` siblings of `out` whose process is not running; the removed paths."""
    removed = []
    for path in sorted(out.parent.glob(f".{glob.escape(out.name)}.partial-*")):
        pid = path.name.rpartition("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and _running(int(pid)):
            continue  # another run's draft, still being written
        shutil.rmtree(path, ignore_errors=True)
        log.info("removed %s, the draft of a run that did not finish", path)
        removed.append(path)
    return removed


@contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A fresh, empty `.<name>.partial-<pid>` beside `out`, removed on leaving, with any
    parent folders it had to make when the run fails (a failed run leaves no empty folder)."""
    made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    path = partial_dir(out, os.getpid())
    remove_stale_drafts(out)
    path.mkdir(parents=True)
    try:
        yield path
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        for folder in made:  # innermost first
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    shutil.rmtree(path, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True

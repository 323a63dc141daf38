"""Running real servers for benchmarks and tests: free ports, start-until-ready, RSS.

    with serve([sys.executable, "-m", "app", "--port", PORT]) as live:
        httpx.get(live.url + "/readyz")

Servers listen on 127.0.0.1 only and are stopped by their PID when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent
PORT = "{port}"  # in an argv, alone or inside an argument: replaced by the free port chosen at start


@dataclass(frozen=True)
class Live:
    url: str
    proc: subprocess.Popen[bytes]
    ready_s: float  # process start to the first 200 from the ready path

    @property
    def pid(self) -> int:
        return self.proc.pid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(
    argv: Sequence[str],
    *,
    ready_path: str = "/readyz",
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
    timeout_s: float = 60.0,
) -> Iterator[Live]:
    """Start `argv` (PORT replaced in arguments and `env` values), wait for a 200 from `ready_path`, stop it at the end.

    A server that exits or is not ready in time raises RuntimeError with its log's tail.
    """
    port = str(free_port())
    url = f"http://127.0.0.1:{port}"
    command = [arg.replace(PORT, port) for arg in argv]  # "--web.listen-address=127.0.0.1:{port}" too
    if env is not None:
        env = {name: value.replace(PORT, port) for name, value in env.items()}
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            ready_s = _wait_ready(proc, url + ready_path, started, timeout_s, log)
            yield Live(url, proc, ready_s)
        finally:
            stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, started: float, timeout_s: float, log: IO[bytes]) -> float:
    with httpx.Client(timeout=1.0) as client:
        while time.perf_counter() - started < timeout_s:
            if proc.poll() is not None:
                raise RuntimeError(f"the server for {url} exited with {proc.returncode}:\n{_tail(log)}")
            try:
                if client.get(url).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.005)
    raise RuntimeError(f"{url} not ready after {timeout_s:g} s:\n{_tail(log)}")


def _tail(log: IO[bytes], lines: int = 40) -> str:
    log.seek(0)
    return "\n".join(log.read().decode(errors="replace").splitlines()[-lines:])


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not go within 20 s; then the same, by PID, for any of
    its descendants still running (servers whose workers outlive their parent)."""
    if proc.poll() is not None:
        return
    family = descendants(proc.pid)  # before the parent goes: orphans are re-parented to init
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [pid for pid in family if _alive(pid)]
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [pid for pid in alive if _alive(pid)]
        if not alive:
            return


def _alive(pid: int) -> bool:
    """Still running: there, and not a zombie waiting for its parent."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def descendants(root: int) -> list[int]:
    """The PIDs of every process below `root`, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):  # the process has gone
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def rss_bytes(root: int) -> int:
    """VmRSS summed over `root` and all its descendants (uvicorn workers), from /proc."""
    return sum(_vm_rss_bytes(pid) for pid in [root, *descendants(root)])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid`, all its threads, from /proc/<pid>/stat (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _vm_rss_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


def repo_path(path: Path | str) -> str:
    """`path` as results files record it: relative to the repository, or under `<tmp>/` for a
    temporary directory (whose random name is dropped), never this machine's absolute path."""
    resolved = Path(path).resolve()
    if resolved.is_relative_to(ROOT):
        return resolved.relative_to(ROOT).as_posix()
    temporary = Path(tempfile.gettempdir()).resolve()
    if resolved.is_relative_to(temporary):
        return "/".join(["<tmp>", *resolved.relative_to(temporary).parts[1:]])
    return resolved.name


def without_settings(**extra: str) -> dict[str, str]:
    """This process's environment without VAESERVE_* settings, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("VAESERVE_")}, **extra}

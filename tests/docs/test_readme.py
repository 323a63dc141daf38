"""The README's examples, run as a new user would run them, against a live server on the shipped model."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.harness import without_settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _commands(text: str, language: str) -> list[str]:
    """The commands of the fenced blocks, continuation lines joined, comments and blank lines dropped."""
    commands = []
    for block in re.findall(rf"```{language}\n(.*?)```", text, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", command).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def test_every_curl_example_of_use_it_answers_2xx(live: tuple[str, Path]) -> None:
    url, workdir = live
    commands = [c for c in _commands(_section("Use it"), "sh") if c.startswith("curl")]
    assert len(commands) >= 10
    for command in commands:
        command = command.replace("localhost:8000", url).replace("curl -sS", "curl -sS --fail-with-body", 1)
        done = subprocess.run(["bash", "-c", command], cwd=workdir, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{command}\n{done.stdout[-500:]}\n{done.stderr[-500:]}"
    for written in ("grid.png", "decoded.png"):
        assert (workdir / written).read_bytes().startswith(b"\x89PNG")
    assert (workdir / "examples" / "digit.png").read_bytes() == (ROOT / "examples" / "digit.png").read_bytes()


def test_the_command_line_and_python_examples_work(live: tuple[str, Path]) -> None:
    url, workdir = live
    section = _section("From Python or the command line")
    env = without_settings(VAESERVE_URL=url, PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin")
    for command in _commands(section, "sh"):
        if "gpu-box" in command:
            continue  # a server that does not exist here
        done = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        # score --fail-on-anomaly exits 1 on the digit with a square: the example shows that on purpose
        expected = 1 if "--fail-on-anomaly" in command else 0
        assert done.returncode == expected, f"{command}\n{done.stdout[-800:]}\n{done.stderr[-800:]}"
    assert (workdir / "back.png").read_bytes().startswith(b"\x89PNG")
    (python,) = re.findall(r"```python\n(.*?)```", section, re.S)
    code = python.replace("http://127.0.0.1:8000", url) + "\nprint(scores.is_anomaly.tolist())\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=60,
                          env=without_settings(PYTHONPATH=str(ROOT)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[False, True]"  # the digit is normal, the square is not

"""docs/client.md as a new user runs it: every command of its console block and its Python session,
against the shipped model, give the outputs the page shows (numbers to the digits shown)."""

from __future__ import annotations

import doctest
import re
import subprocess
import sys
from pathlib import Path

from bench.harness import without_settings

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "client.md").read_text()
NUMBER = re.compile(r"-?\d+\.\d+(?:e-?\d+)?")


def same_text_and_numbers(want: str, got: str) -> bool:
    """Equal once numbers are compared to the decimals `want` writes, and whitespace is ignored."""
    if re.sub(r"\s+", "", NUMBER.sub("#", want)) != re.sub(r"\s+", "", NUMBER.sub("#", got)):
        return False
    for w, g in zip(NUMBER.findall(want), NUMBER.findall(got), strict=True):
        decimals = len(w.split(".")[1].split("e")[0])
        exponent = int(w.split("e")[1]) if "e" in w else 0
        if abs(float(w) - float(g)) > 0.51 * 10.0 ** (exponent - decimals):
            return False
    return True


class _NumberChecker(doctest.OutputChecker):
    def check_output(self, want: str, got: str, optionflags: int) -> bool:
        return super().check_output(want, got, optionflags) or same_text_and_numbers(want, got)


def test_the_command_block_prints_what_the_page_shows(live: tuple[str, Path]) -> None:
    url, workdir = live
    (block,) = re.findall(r"```console\n(.*?)```", PAGE, re.S)
    runs = re.findall(r"^\$ (.*?)\n(.*?)(?=^\$ |\Z)", block, re.S | re.M)
    assert len(runs) >= 8
    env = without_settings(VAESERVE_URL=url, PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin")
    for command, shown in runs:
        command = re.sub(r"\s+#.*$", "", command)
        done = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        assert done.returncode == 0, f"{command}\n{done.stderr}"
        got = done.stdout.replace(url, "http://127.0.0.1:8000")
        assert same_text_and_numbers(shown, got), f"$ {command}\n--- the page shows\n{shown}\n--- it printed\n{got}"


def test_the_python_session_gives_what_the_page_shows(live: tuple[str, Path], monkeypatch) -> None:
    url, workdir = live
    (session,) = re.findall(r"```pycon\n(.*?)```", PAGE, re.S)
    monkeypatch.setenv("VAESERVE_URL", url)
    monkeypatch.chdir(workdir)
    test = doctest.DocTestParser().get_doctest(session, {}, "docs/client.md", "docs/client.md", 0)
    runner = doctest.DocTestRunner(checker=_NumberChecker(), optionflags=doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    failed, attempted = runner.run(test, out=report.append)
    assert (failed, attempted) == (0, len(test.examples)), "".join(report)

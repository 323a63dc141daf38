"""The README's examples, run as a new user would run them, against a live server on the shipped model."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
from PIL import Image, ImageOps

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


def _shown(number: str, value: float) -> bool:
    """`value` written to the decimals of `number` ("18,902", "0.0187") is `number`."""
    digits = number.replace(",", "")
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    return abs(float(digits) - value) <= 0.51 * 10.0**-decimals


def test_the_numbers_quoted_for_an_inverted_digit_are_what_the_server_gives(live: tuple[str, Path]) -> None:
    """README and docs/api.md quote what examples/digit.png scores upright and inverted (prose, not a
    command, so no other test runs them)."""
    url, workdir = live
    digit = Image.open(workdir / "examples" / "digit.png").convert("L")
    results = {}
    for name, image in (("upright", digit), ("inverted", ImageOps.invert(digit))):
        body = io.BytesIO()
        image.save(body, "PNG")
        answer = httpx.post(f"{url}/v1/score?score=mse", content=body.getvalue(),
                            headers={"content-type": "image/png"}, timeout=60).json()  # fmt: skip
        results[name] = answer["results"][0] | {"threshold": answer["threshold"]}
    inverted, upright = results["inverted"], results["upright"]
    assert inverted["is_anomaly"] and not upright["is_anomaly"]
    readme = re.search(r"`examples/digit.png` inverted: `mse` ([\d.]+)\s+against a threshold of ([\d.]+), "
                       r"p-value ([\d.]+)\)", README)  # fmt: skip
    assert readme is not None
    for shown, value in zip(
        readme.groups(), (inverted["mse"], inverted["threshold"], inverted["p_value"]), strict=True
    ):
        assert _shown(shown, value), f"README shows {shown}, the server gives {value}"
    api = re.search(r"`examples/digit.png` inverted scores `mse` ([\d.]+) against a threshold of\s+([\d.]+) \(([\d.]+) "
                    r"upright\), `neg_elbo` ([\d,]+) nats \(([\d,]+) upright\), p-value ([\d.]+),",
                    (ROOT / "docs" / "api.md").read_text())  # fmt: skip
    assert api is not None
    values = (inverted["mse"], inverted["threshold"], upright["mse"], inverted["neg_elbo"], upright["neg_elbo"],
              inverted["p_value"])  # fmt: skip
    for shown, value in zip(api.groups(), values, strict=True):
        assert _shown(shown, value), f"docs/api.md shows {shown}, the server gives {value}"

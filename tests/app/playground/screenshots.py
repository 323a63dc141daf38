"""Screenshots of the playground's panels, from a real run on the shipped model, for docs/playground.md.

    .venv/bin/python -m tests.app.playground.screenshots docs/img      # or: make screenshots

Starts `python -m app` on a free port of 127.0.0.1, drives the page in headless chromium as a
person would (a drawn 7, two uploaded MNIST digits to interpolate, a slider moved), and writes
playground.png (the whole page) and playground-<panel>.png for each panel.
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect

from app.api.examples import ONE, SEVEN, THREE
from bench import harness
from bench.harness import PORT
from tests.app.playground.browser import chromium, open_playground, stroke

PANELS = ("model", "draw", "sample", "interpolate", "traverse")
# A 7 with a bar, drawn in the draw panel: fractions of the canvas.
DRAWN = [(0.3, 0.25), (0.7, 0.25), (0.6, 0.45), (0.5, 0.65), (0.45, 0.8)]
BAR = [(0.42, 0.5), (0.7, 0.48)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the PNGs")
    out: Path = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    argv_server = [sys.executable, "-m", "app", "--port", PORT, "--log-level", "warning"]
    with (
        tempfile.TemporaryDirectory() as scratch,
        harness.serve(argv_server, env=harness.without_settings()) as live,
        chromium(Path(scratch) / "profile", width=1280, height=900) as context,
    ):
        digits = {}
        for name, b64 in (("one", ONE), ("seven", SEVEN), ("three", THREE)):
            digits[name] = Path(scratch) / f"{name}.png"
            digits[name].write_bytes(base64.b64decode(b64))
        page = open_playground(context, live.url)
        stroke(page, "#draw-canvas", DRAWN)
        stroke(page, "#draw-canvas", BAR)
        expect(page.locator("#draw-decision")).not_to_be_empty()
        page.wait_for_load_state("networkidle")  # the second stroke's answers too
        page.get_by_label("Upload first").set_input_files(str(digits["one"]))
        page.get_by_label("Upload second").set_input_files(str(digits["seven"]))
        page.get_by_role("button", name="Interpolate").click()
        expect(page.locator("#interpolate-frame")).to_be_visible()
        page.get_by_label("Position on the path").fill("4")
        page.get_by_label("Start from").select_option("drawing")
        page.wait_for_load_state("networkidle")
        page.locator("#traverse-sliders input").first.fill("2.5")
        page.get_by_role("button", name="Sweep grid").click()
        expect(page.locator("#traverse-grid")).to_be_visible()
        page.wait_for_load_state("networkidle")
        for panel in PANELS:
            page.locator(f"#panel-{panel}").screenshot(path=out / f"playground-{panel}.png")
        page.screenshot(path=out / "playground.png", full_page=True)
    for path in sorted(out.glob("playground*.png")):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Driving the playground in Debian's chromium with Playwright: no browser download, ever.

    with chromium(tmp_path / "profile") as context:
        page = open_playground(context, "http://127.0.0.1:8000")
        stroke(page, "#draw-canvas", ONE)

Shared by the browser tests and the screenshot script (screenshots.py).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; `make chromium` installs it
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip
TIMEOUT_MS = 30_000  # any one wait, assertions' included; generous for a machine busy with other work
# Strokes in the canvas's unit square: a "1" and a "7" of MNIST's proportions.
ONE = [(0.52, 0.18), (0.5, 0.4), (0.48, 0.62), (0.47, 0.82)]
SEVEN = [(0.28, 0.22), (0.72, 0.22), (0.58, 0.5), (0.46, 0.82)]


@contextmanager
def chromium(profile: Path, width: int = 1400, height: int = 1000) -> Iterator[BrowserContext]:
    """Headless chromium with a fresh profile in `profile`, torn down at the end of the block."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `make chromium` (apt-get install chromium) installs it")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=ARGS,
            viewport={"width": width, "height": height},
        )  # fmt: skip
        context.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)  # expect() has its own default of 5 s
        try:
            yield context
        finally:
            context.close()


def open_playground(context: BrowserContext, url: str) -> Page:
    """A new tab (its own sessionStorage) on the playground, once its first load is done."""
    page = context.new_page()
    page.goto(f"{url}/playground")
    page.wait_for_selector("body[data-ready=true]", state="attached")
    return page


def stroke(page: Page, canvas: str, points: Sequence[tuple[float, float]], steps: int = 6) -> None:
    """Drag the mouse through `points` (fractions of the canvas's box), pressed."""
    page.locator(canvas).scroll_into_view_if_needed()  # the mouse only reaches what is in the viewport
    box = page.locator(canvas).bounding_box()
    assert box is not None, canvas
    xy = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for point in xy[1:]:
        page.mouse.move(*point, steps=steps)
    page.mouse.up()


def image_pixels(page: Page, selector: str) -> np.ndarray:
    """The image an <img> shows (a data: or blob: URL), as uint8 grey pixels (H, W), read back in the page."""
    page.wait_for_function(
        "(s) => document.querySelector(s).complete && document.querySelector(s).naturalWidth", arg=selector
    )
    data_url = page.evaluate(
        """(selector) => {
            const img = document.querySelector(selector);
            const canvas = Object.assign(document.createElement("canvas"), {width: img.naturalWidth,
                                                                             height: img.naturalHeight});
            canvas.getContext("2d").drawImage(img, 0, 0);
            return canvas.toDataURL("image/png");
        }""",
        selector,
    )
    with Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))) as image:
        return np.asarray(image.convert("RGB"))[..., 0]


def canvas_png(page: Page, canvas: str) -> bytes:
    """What a sketchpad sends: its canvas as a PNG."""
    data_url = page.evaluate("(selector) => document.querySelector(selector).toDataURL('image/png')", canvas)
    return base64.b64decode(data_url.split(",", 1)[1])

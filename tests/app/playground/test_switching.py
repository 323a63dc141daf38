"""The playground with two models of different latent size and input: what a model switch
redraws, the bar charts at any number of dimensions, and form fields bounded by /v1/limits."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator

import httpx2 as httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from model.bundle import Bundle
from tests.app.playground.browser import ONE, open_playground, stroke
from tests.app.playground.conftest import _serve
from tests.helpers import TINY_ARGS, png_bytes, real_digits

WIDE_LATENT = 16


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory, bundle: Bundle) -> Iterator[str]:
    """A server with digits/1 (4 latent dimensions, 28 x 28) and wide/1 (16, 16 x 16), trained
    here for 1 epoch on 200 digits as PNG files, resized to 16 x 16 by the loader."""
    from training.__main__ import main

    root = tmp_path_factory.mktemp("two-models")
    shutil.copytree(bundle.path, root / "digits" / "1")
    folder = root / "pngs"
    folder.mkdir()
    for i, image in enumerate(real_digits(200)[0]):
        (folder / f"{i:03d}.png").write_bytes(png_bytes(image))
    code = main(["--data", str(folder), "--epochs", "1", "--out", str(root / "wide" / "1"), "--run-dir",
                 str(root / "run"), *TINY_ARGS, "--set", f"model.latent_dim={WIDE_LATENT}", "--set", "data.height=16",
                 "--set", "data.width=16"])  # fmt: skip
    assert code == 0
    yield from _serve(root)


@pytest.fixture
def page(browser: BrowserContext, two_models: str) -> Iterator[Page]:
    page = open_playground(browser, two_models)
    yield page
    page.close()


def _labels_fit(page: Page, svg: str) -> list[str]:
    """The labels of the chart `svg`, after checking that each lies inside it and none overlaps the next."""
    boxes = page.evaluate(
        """(selector) => {
            const svg = document.querySelector(selector);
            const outer = svg.getBoundingClientRect();
            return {outer: [outer.left, outer.right, outer.top, outer.bottom],
                    labels: [...svg.querySelectorAll("text")].map((t) => {
                        const b = t.getBoundingClientRect();
                        return [t.textContent, b.left, b.right, b.top, b.bottom];
                    })};
        }""",
        svg,
    )
    left, right, top, bottom = boxes["outer"]
    labels = boxes["labels"]
    for text, x0, x1, y0, y1 in labels:
        assert left - 0.5 <= x0 and x1 <= right + 0.5 and top - 0.5 <= y0 and y1 <= bottom + 0.5, (text, boxes)
    for (a, _, a_right, _, _), (b, b_left, _, _, _) in itertools.pairwise(labels):
        assert a_right < b_left, (a, b)
    return [text for text, *_ in labels]


def test_a_model_switch_clears_the_sweep_and_the_drawings_start_point(page: Page, two_models: str) -> None:
    stroke(page, "#draw-canvas", ONE)
    expect(page.locator("#draw-decision")).not_to_be_empty()
    page.get_by_label("Start from").select_option("drawing")
    page.get_by_role("button", name="Sweep grid").click()
    expect(page.locator("#traverse-grid")).to_be_visible()
    page.get_by_role("combobox", name="Model").select_option("wide")
    expect(page.locator("#model-card-title")).to_have_text("wide version 1")
    expect(page.locator("#traverse-grid")).to_be_hidden()  # the other model's sweep
    expect(page.get_by_label("Start from")).to_have_value("origin")  # the drawing was cleared: 16 x 16 input
    expect(page.locator("#draw-decision")).to_be_empty()
    expect(page.locator("#traverse-problem")).to_be_hidden()
    detail = httpx.get(f"{two_models}/v1/models/wide", timeout=30).json()
    latents = detail["latents"]
    by_activity = sorted(range(WIDE_LATENT), key=lambda d: -latents["dimensions"][d]["activity"])
    expected = (latents["most_active"] or by_activity)[:8]  # the new model's dimensions, as the sliders pick them
    assert detail["latent_dim"] == WIDE_LATENT
    expect(page.locator("#traverse-sliders input")).to_have_count(len(expected))
    shown = page.locator("#traverse-sliders input").evaluate_all("(inputs) => inputs.map((i) => i.dataset.dimension)")
    assert shown == [str(d) for d in expected]
    expect(page.locator("#traverse-image")).to_be_visible()
    page.get_by_role("button", name="Sweep grid").click()  # a new sweep, of this model
    expect(page.locator("#traverse-grid")).to_be_visible()
    height = page.evaluate("document.querySelector('#traverse-grid').naturalHeight")
    assert height >= len(expected) * 16  # a row of 16-pixel images per dimension


def test_the_activity_chart_is_laid_out_for_any_latent_size(page: Page) -> None:
    for model, size in (("wide", WIDE_LATENT), ("digits", 4)):
        page.get_by_role("combobox", name="Model").select_option(model)
        expect(page.locator("#model-card-title")).to_contain_text(f"{model} version 1")
        expect(page.locator("#model-card svg rect.bar")).to_have_count(size)
        assert _labels_fit(page, "#model-card svg") == [str(i) for i in range(size)]
    # The chart itself, in a figure of the card's width, for 1 to 64 dimensions: labels upright
    # (the same glyph size whatever the count), inside the chart, never overlapping.
    glyphs = []
    for size in (1, 4, 16, 64):
        page.evaluate(
            """async (size) => {
                const { barChart } = await import("./charts.js");
                document.querySelector("#test-chart")?.remove();
                const figure = Object.assign(document.createElement("figure"), {className: "chart", id: "test-chart"});
                const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
                figure.append(svg);
                document.querySelector("main").append(figure);
                barChart(svg, Array.from({length: size}, (_, i) => (i % 3) - 0.5));
            }""",
            size,
        )
        expect(page.locator("#test-chart rect.bar")).to_have_count(size)
        labels = _labels_fit(page, "#test-chart svg")
        assert labels[0] == "0" and len(labels) >= min(size, 8)  # thinned out at 64, never fewer than 8
        # measured in the page, as _labels_fit does (Playwright's bounding_box() gives None when
        # the element is momentarily not visible, e.g. while the page lays itself out again)
        width, height = page.evaluate(
            """() => { const b = document.querySelector("#test-chart svg text").getBoundingClientRect();
                       return [b.width, b.height]; }"""
        )
        assert width > 0 and height > 0
        glyphs.append((round(width, 1), round(height, 1)))
    assert len(set(glyphs)) == 1, glyphs  # "0" is drawn the same size at 1, 4, 16 and 64 bars


def test_fields_are_bounded_by_the_servers_limits(page: Page, two_models: str) -> None:
    limits = httpx.get(f"{two_models}/v1/limits", timeout=30).json()
    expect(page.get_by_label("Samples", exact=True)).to_have_attribute("max", str(limits["max_samples"]))
    expect(page.get_by_label("Steps", exact=True)).to_have_attribute("max", str(limits["max_interpolation_steps"]))
    expect(page.get_by_label("Seed", exact=True)).to_have_attribute("max", str(2**53 - 1))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.get_by_label("Seed", exact=True).fill("99999999999999999999")
    page.get_by_label("Seed", exact=True).press("Enter")
    expect(page.locator("#sample-problem")).to_contain_text("Seed: ")
    assert not [u for u in requests if "/v1/samples" in u]  # refused in the browser


def test_a_model_switch_sends_no_sample_request_the_form_would_refuse(page: Page) -> None:
    expect(page.locator("#sample-grid")).to_be_visible()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.get_by_label("Samples", exact=True).fill("")
    page.get_by_label("Temperature", exact=True).fill("")
    page.get_by_role("combobox", name="Model").select_option("wide")
    expect(page.locator("#model-card-title")).to_have_text("wide version 1")
    expect(page.locator("#traverse-image")).to_be_visible()
    expect(page.locator("#sample-problem")).to_contain_text("Samples: ")  # the first field the form refuses
    expect(page.locator("#sample-grid")).to_be_hidden()  # the other model's samples
    assert not [u for u in requests if "/v1/samples" in u]
    page.get_by_label("Samples", exact=True).fill("4")
    page.get_by_label("Temperature", exact=True).fill("1")
    page.get_by_role("button", name="Draw samples").click()
    expect(page.locator("#sample-grid")).to_be_visible()
    expect(page.locator("#sample-problem")).to_be_hidden()  # the earlier problem is gone with the answer
    assert [u for u in requests if "/v1/samples" in u and "model=wide" in u and "n=4" in u]

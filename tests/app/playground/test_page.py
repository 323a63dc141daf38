"""The playground in a real browser (Debian's chromium, headless) against a real server:
what a person does with it, checked against what the API answers for the same input."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import BrowserContext, Page, expect

from tests.app.playground.browser import ONE, SEVEN, canvas_png, image_pixels, open_playground, stroke
from tests.app.playground.conftest import KEY


@pytest.fixture
def page(browser: BrowserContext, live_url: str) -> Iterator[Page]:
    """A fresh tab on the playground; at the end, every request it made went to the server that served it."""
    page = open_playground(browser, live_url)
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    yield page
    page.close()
    elsewhere = [u for u in urls if not u.startswith((live_url + "/", "data:", "blob:"))]
    assert not elsewhere, elsewhere


def pixels_of(b64: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return np.asarray(image)


def _score_table(page: Page) -> dict[str, float]:
    rows = page.locator("#draw-scores tbody tr")
    return {
        rows.nth(i).locator("td").nth(0).inner_text(): float(
            rows.nth(i).locator("td").nth(1).get_attribute("data-value")
        )
        for i in range(rows.count())
    }


def test_a_stroke_is_reconstructed_scored_and_decided_as_the_api_does(page: Page, live_url: str) -> None:
    expect(page.locator("#model-card-title")).to_have_text("digits version 1 (default)")
    stroke(page, "#draw-canvas", ONE)
    expect(page.locator("#draw-decision")).to_have_text(re.compile(r"^(Normal|Anomaly): \w+ "))
    expect(page.locator("#draw-reconstruction")).to_be_visible()
    expect(page.locator("#draw-heatmap")).to_be_visible()
    png = canvas_png(page, "#draw-canvas")
    with httpx.Client(base_url=live_url, timeout=30) as api:
        files = {"file": ("canvas.png", png, "image/png")}
        scored = api.post("/v1/score", files=files).json()
        recon = api.post("/v1/reconstruct", files=files).json()
        mean = api.post("/v1/encode", files=files).json()["results"][0]["mean"]
    result = scored["results"][0]
    verdict = "Anomaly" if result["is_anomaly"] else "Normal"
    expect(page.locator("#draw-decision")).to_contain_text(f"{verdict}: {scored['score']} ")
    table = _score_table(page)
    for name, value in {**{k: result[k] for k in recon["results"][0]["scores"]}, "threshold": scored["threshold"],
                        "p-value": result["p_value"]}.items():  # fmt: skip
        assert table[name] == pytest.approx(value, rel=1e-5, abs=1e-9), name
    expect(page.locator("#draw-scores tr.deciding td").first).to_have_text(scored["score"])
    shown = image_pixels(page, "#draw-reconstruction")
    expected = pixels_of(recon["results"][0]["image"])
    assert np.abs(shown.astype(int) - expected.astype(int)).max() <= 1
    expect(page.locator("#draw-latent rect.bar")).to_have_count(len(mean))


def test_an_upload_replaces_the_drawing(page: Page, tmp_path: Path, digit_pngs: list[bytes], live_url: str) -> None:
    stroke(page, "#draw-canvas", SEVEN)
    expect(page.locator("#draw-decision")).not_to_be_empty()
    drawn = page.locator("#draw-reconstruction").get_attribute("src")
    upload = tmp_path / "digit.png"
    upload.write_bytes(digit_pngs[0])
    page.get_by_label("Upload an image").set_input_files(str(upload))
    page.wait_for_function("(before) => document.querySelector('#draw-reconstruction').src !== before", arg=drawn)
    with httpx.Client(base_url=live_url, timeout=30) as api:
        recon = api.post("/v1/reconstruct", files={"file": ("digit.png", digit_pngs[0], "image/png")}).json()
    shown = image_pixels(page, "#draw-reconstruction")
    assert np.abs(shown.astype(int) - pixels_of(recon["results"][0]["image"]).astype(int)).max() <= 1


def test_a_bad_file_gets_the_servers_problem_in_words(page: Page, tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    page.get_by_label("Upload an image").set_input_files(str(bad))
    expect(page.locator("#draw-problem")).to_have_text("400 Invalid image: image 0: not a decodable image")
    expect(page.locator("#draw-reconstruction")).to_be_hidden()
    expect(page.locator("#draw-decision")).to_be_empty()


def test_samples_follow_the_seed_from_the_keyboard(page: Page) -> None:
    grid = page.locator("#sample-grid")
    expect(grid).to_be_visible()  # drawn when the model loads
    first = image_pixels(page, "#sample-grid")
    page.get_by_label("Seed").focus()
    page.keyboard.press("Control+A")
    page.keyboard.type("7")
    page.keyboard.press("Enter")  # submits the form, like the button
    page.wait_for_function(
        "(before) => document.querySelector('#sample-grid').src !== before", arg=grid.get_attribute("src")
    )
    assert not np.array_equal(image_pixels(page, "#sample-grid"), first)


def test_moving_the_interpolation_slider_changes_the_image(page: Page) -> None:
    stroke(page, "#from-canvas", ONE)
    stroke(page, "#to-canvas", SEVEN)
    page.get_by_role("button", name="Interpolate").click()
    frame = page.locator("#interpolate-frame")
    expect(frame).to_be_visible()
    expect(page.locator("#interpolate-at")).to_have_text("t = 0.00 (image 1 of 10)")
    expect(page.locator("#interpolate-strip img")).to_have_count(10)
    start = image_pixels(page, "#interpolate-frame")
    slider = page.get_by_label("Position on the path")
    slider.focus()
    page.keyboard.press("End")  # a range input moves with the keyboard
    expect(page.locator("#interpolate-at")).to_have_text("t = 1.00 (image 10 of 10)")
    assert not np.array_equal(image_pixels(page, "#interpolate-frame"), start)


def test_interpolating_without_two_images_says_so(page: Page) -> None:
    stroke(page, "#from-canvas", ONE)
    page.get_by_role("button", name="Interpolate").click()
    expect(page.locator("#interpolate-problem")).to_have_text("Error: draw or upload both images first")


def test_moving_a_traversal_slider_decodes_its_latent(page: Page, live_url: str) -> None:
    image = page.locator("#traverse-image")
    expect(image).to_be_visible()  # the prior mean, decoded when the model loads
    sliders = page.locator("#traverse-sliders input")
    expect(sliders).to_have_count(4)  # every dimension of the tiny model, most active first
    before = image.get_attribute("src")
    sliders.first.focus()
    page.keyboard.press("End")  # +3 prior standard deviations
    page.wait_for_function("(before) => document.querySelector('#traverse-image').src !== before", arg=before)
    z = [0.0] * 4
    for i in range(sliders.count()):
        z[int(sliders.nth(i).get_attribute("data-dimension"))] = float(sliders.nth(i).input_value())
    assert sorted(z) == [0.0, 0.0, 0.0, 3.0]
    with httpx.Client(base_url=live_url, timeout=30) as api:
        decoded = api.post("/v1/decode", json={"latents": [z]}).json()["images"][0]
    assert np.abs(image_pixels(page, "#traverse-image").astype(int) - pixels_of(decoded).astype(int)).max() <= 1
    page.get_by_role("button", name="Sweep grid").click()
    expect(page.locator("#traverse-grid")).to_be_visible()


def test_switching_models_and_versions(page: Page) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.get_by_role("combobox", name="Model").select_option("other")
    expect(page.locator("#model-card-title")).to_have_text("other version 1")
    page.get_by_role("combobox", name="Model").select_option("digits")
    expect(page.get_by_label("Version")).to_have_value("2")  # the highest, as the API picks
    expect(page.locator("#model-card-title")).to_have_text("digits version 2")
    page.get_by_label("Version").select_option("1")
    expect(page.locator("#model-card-title")).to_have_text("digits version 1 (default)")
    page.get_by_label("Version").select_option("2")
    expect(page.locator("#model-card-title")).to_have_text("digits version 2")
    requests.clear()
    stroke(page, "#draw-canvas", ONE)
    expect(page.locator("#draw-decision")).not_to_be_empty()
    scored = [u for u in requests if "/v1/score" in u]
    assert scored and all("model=digits" in u and "version=2" in u for u in scored)


def test_a_missing_or_wrong_key_is_explained_and_a_good_one_kept_for_the_tab(
    browser: BrowserContext, keyed_url: str
) -> None:
    page = open_playground(browser, keyed_url)
    problem = page.locator("#problem")
    expect(problem).to_have_text(
        "401 Unauthorized: an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>\nEnter a valid API key in the field at the top of the page."
    )
    key = page.get_by_label("API key")
    key.fill("not-the-key-0123456789")
    key.press("Enter")
    expect(problem).to_contain_text("401 Unauthorized: the API key is not valid")
    key.fill(KEY)
    key.press("Enter")
    expect(problem).to_be_hidden()
    expect(page.locator("#model-card-title")).to_have_text("digits version 1 (default)")
    assert page.evaluate("sessionStorage.getItem('vaeserve.apiKey')") == KEY
    assert page.evaluate("localStorage.length") == 0
    page.reload()  # the same tab keeps it
    page.wait_for_selector("body[data-ready=true]", state="attached")
    expect(page.locator("#model-card-title")).to_have_text("digits version 1 (default)")
    other_tab = open_playground(browser, keyed_url)  # a new tab starts without it
    expect(other_tab.locator("#problem")).to_contain_text("401 Unauthorized: an API key is required")
    for tab in (page, other_tab):
        tab.close()

"""/docs and /redoc in a real headless chromium, with every request off this server refused:
the pages render their operations from the package's own assets, as in an air-gapped cluster."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Route, expect

from bench.harness import PORT, serve, without_settings
from tests.app.playground.browser import chromium


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with chromium(tmp_path_factory.mktemp("docs-profile")) as context:
        yield context


@pytest.fixture(scope="module")
def live_url() -> Iterator[str]:
    argv = [sys.executable, "-m", "app", "--port", PORT, "--log-level", "warning"]
    with serve(argv, env=without_settings()) as live:
        yield live.url


def _offline(context: BrowserContext, url: str) -> list[tuple[str, str]]:
    """Refuse every request that is not to `url`; return those refused, (resource type, url)."""
    refused: list[tuple[str, str]] = []

    def route(r: Route) -> None:
        if r.request.url.startswith(url):
            r.continue_()
        else:
            refused.append((r.request.resource_type, r.request.url))
            r.abort()

    context.route("**/*", route)
    return refused


def test_swagger_ui_renders_every_operation_offline(browser: BrowserContext, live_url: str, tmp_path: Path) -> None:
    refused = _offline(browser, live_url)
    page = browser.new_page()
    page.goto(f"{live_url}/docs")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert {"/v1/encode", "/v1/score", "/v1/decode", "/v2/models/{model_name}/infer"} <= {p.strip() for p in paths}
    assert operations.count() >= 25
    page.locator("#operations-v1-score_images_v1_score_post .opblock-summary").click()  # open one operation
    expect(page.locator(".opblock.is-open .responses-table")).to_contain_text("Gateway timeout")
    page.close()
    assert refused == []


def test_redoc_renders_offline(browser: BrowserContext, live_url: str) -> None:
    refused = _offline(browser, live_url)
    page = browser.new_page()
    page.goto(f"{live_url}/redoc")
    heading = page.locator("h2").filter(has_text="Score images for anomalies")
    expect(heading).to_be_visible()
    assert page.locator("h2").count() >= 25  # one per operation
    page.close()
    # ReDoc's bundle links its "API docs by Redocly" logo from a CDN: only that picture is missing offline.
    assert all(kind == "image" for kind, _ in refused), refused

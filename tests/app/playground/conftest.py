"""Real servers on 127.0.0.1 (`python -m app` on the session's repository: digits/1, digits/2,
other/1) and one headless chromium for the package's browser tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext

from bench import harness
from bench.harness import PORT
from tests.app.playground.browser import chromium

KEY = "playground-key-0123456789"


def _serve(repository: Path, **settings: str) -> Iterator[str]:
    argv = [sys.executable, "-m", "app", "--repository", str(repository), "--port", PORT, "--default-model", "digits:1",
            "--log-level", "warning"]  # fmt: skip
    with harness.serve(argv, env=harness.without_settings(**settings)) as live:
        yield live.url


@pytest.fixture(scope="package")
def live_url(repository: Path) -> Iterator[str]:
    yield from _serve(repository)


@pytest.fixture(scope="package")
def keyed_url(repository: Path) -> Iterator[str]:
    """The same, asking for an API key."""
    yield from _serve(repository, VAESERVE_API_KEYS=KEY)


@pytest.fixture(scope="package")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context

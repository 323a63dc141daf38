"""A live vaeserve on 127.0.0.1 for the client and CLI tests, and the same app in process to compare with."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from bench import harness
from bench.harness import PORT

LIMITS = {"max_images_per_request": 8, "max_samples": 64}


@pytest.fixture(scope="package")
def live_url(repository: Path) -> Iterator[str]:
    """`python -m app` serving the session's repository (default digits:1) until the client tests end."""
    argv = [sys.executable, "-m", "app", "--repository", str(repository), "--port", PORT, "--default-model", "digits:1",
            "--log-level", "warning"]  # fmt: skip
    env = harness.without_settings(**{f"VAESERVE_{k.upper()}": str(v) for k, v in LIMITS.items()})
    with harness.serve(argv, env=env) as live:
        yield live.url


@pytest.fixture(scope="package")
def in_process(repository: Path) -> Iterator[TestClient]:
    """The same app and settings in this process: what the client's answers must equal."""
    settings = Settings(model_repository=repository, default_model="digits:1", **LIMITS)  # type: ignore[arg-type]
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def digit_files(tmp_path: Path, digit_pngs: list[bytes]) -> list[Path]:
    """The four digits as PNG files, alone in a folder."""
    folder = tmp_path / "digits"
    folder.mkdir()
    files = [folder / f"digit{i}.png" for i in range(len(digit_pngs))]
    for path, png in zip(files, digit_pngs, strict=True):
        path.write_bytes(png)
    return files

"""The shipped model served as `make serve` serves it, and a user's folder holding the examples."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.harness import PORT, serve, without_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(url, folder): the server on the shipped model, and a folder with a copy of examples/."""
    workdir = tmp_path_factory.mktemp("user")
    shutil.copytree(ROOT / "examples", workdir / "examples")
    argv = [sys.executable, "-m", "app", "--port", PORT, "--log-level", "warning"]
    with serve(argv, env=without_settings()) as server:
        yield server.url, workdir

"""A client on the real app, serving the session's model repository (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


@pytest.fixture(scope="module")
def client(repository: Path) -> Iterator[TestClient]:
    settings = Settings(model_repository=repository, default_model="digits:1", max_samples=64, max_images_per_request=8)
    with TestClient(create_app(settings)) as test_client:
        yield test_client

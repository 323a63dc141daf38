"""A model repository built from the session's trained bundle, and a client on the real app."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from model.bundle import Bundle, write_bundle
from tests.helpers import png_bytes, real_digits


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory, bundle: Bundle) -> Path:
    """digits/1, digits/2 (same weights, its own manifest) and other/1."""
    root = tmp_path_factory.mktemp("repository")
    shutil.copytree(bundle.path, root / "digits" / "1")
    files = {name: (bundle.path / name).read_bytes() for name in bundle.manifest.files}
    write_bundle(root / "digits" / "2", bundle.manifest.model_copy(update={"version": "2"}), files)
    write_bundle(root / "other" / "1", bundle.manifest.model_copy(update={"name": "other"}), files)
    return root


@pytest.fixture(scope="module")
def client(repository: Path) -> Iterator[TestClient]:
    settings = Settings(model_repository=repository, default_model="digits:1", max_samples=64, max_images_per_request=8)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def digit_pngs() -> list[bytes]:
    images, _ = real_digits(4, seed=2)
    return [png_bytes(image) for image in images]


@pytest.fixture(scope="session")
def digit_arrays() -> np.ndarray:
    images, _ = real_digits(4, seed=2)
    return (images[:, None] / 255.0).astype(np.float32)

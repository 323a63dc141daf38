"""Session fixtures: real bundles trained once on real digits, shared by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.bundle import Bundle, load_bundle
from tests.helpers import TINY_ARGS, real_digits, write_digits_npz


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digits_npz(tmp_path_factory.mktemp("data") / "digits.npz", n=300)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, digits_npz: Path) -> tuple[Bundle, Path]:
    """A conv VAE trained for 2 epochs on 300 real digits: (bundle, run directory)."""
    pytest.importorskip("torch")
    from training.__main__ import main

    root = tmp_path_factory.mktemp("trained")
    code = main(["--data", str(digits_npz), "--epochs", "2", "--out", str(root / "digits" / "1"),
                 "--run-dir", str(root / "run"), "--name", "digits", *TINY_ARGS])  # fmt: skip
    assert code == 0
    return load_bundle(root / "digits" / "1"), root / "run"


@pytest.fixture(scope="session")
def bundle(trained: tuple[Bundle, Path]) -> Bundle:
    return trained[0]


@pytest.fixture(scope="session")
def digit_images() -> np.ndarray:
    """64 real digits as model inputs, float32 (64, 1, 28, 28) in [0, 1]."""
    images, _ = real_digits(64, seed=1)
    return (images[:, None] / 255.0).astype(np.float32)

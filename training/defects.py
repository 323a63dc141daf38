"""Synthetic defects on normal images, each with its exact ground-truth mask.

    images, masks = add_defects(normal, "square", rng)   # (N, C, H, W), (N, H, W) bool

Six kinds, drawn on each image at a random place with random size (scaled to the image:
the numbers below are for 28x28, and grow with the shorter side, e.g. x 2.3 at 64x64):

    square    a filled bright square, 4 to 7 pixels a side
    scratch   a bright straight line 1 to 2 pixels wide and 10 to 20 long, at any angle
    blob      a bright blob with soft edges, radius 2 to 4 (a Gaussian bump)
    missing   part of a stroke erased: a disc of radius 2.5 to 4 around a bright pixel set to 0
    spot      a dark disc of radius 1 to 2.5, each channel 0 to 0.3 (a haemorrhage, a speck of dust)
    stain     a soft blob of a random colour, radius 2 to 4, at opacity 0.5 to 0.9 (a discolouration)

DEFECTS are those for white-on-black digits; COLOUR_DEFECTS those for colour surfaces such as
the fundus patches (training/fundus.py), where dark and coloured marks matter as much as bright ones.

The mask is the set of pixels the defect changed by more than `MASK_CHANGE` (on any
channel): exactly what a localisation should find, and nothing a defect left as it was (a
bright square over a bright stroke changes only the dark pixels it covers). A defect is
drawn again, elsewhere, until it changes at least `MIN_PIXELS` pixels.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

F32 = NDArray[np.float32]
DEFECTS = ("square", "scratch", "blob", "missing")
COLOUR_DEFECTS = ("scratch", "spot", "stain")
KINDS = (*DEFECTS, "spot", "stain")
MASK_CHANGE = 0.1  # a pixel belongs to the defect when it changed by more than this
MIN_PIXELS = 4
_TRIES = 50


def add_defects(images: F32, kind: str, rng: np.random.Generator) -> tuple[F32, NDArray[np.bool_]]:
    """A defect of `kind` on each image (N, C, H, W) in [0, 1] -> defective images and masks (N, H, W)."""
    if kind not in KINDS:
        raise ValueError(f"unknown defect {kind!r}; defects: {', '.join(KINDS)}")
    out, masks = [], []
    for image in images:
        defective, mask = _one(image, kind, rng)
        out.append(defective)
        masks.append(mask)
    return np.stack(out).astype(np.float32), np.stack(masks)


def _one(image: F32, kind: str, rng: np.random.Generator) -> tuple[F32, NDArray[np.bool_]]:
    for _ in range(_TRIES):
        defective = _draw(image, kind, rng)
        mask = (np.abs(defective - image) > MASK_CHANGE).any(axis=0)
        if mask.sum() >= MIN_PIXELS:
            return defective, mask
    raise ValueError(f"could not place a {kind} defect that changes {MIN_PIXELS} pixels in {_TRIES} tries")


def _draw(image: F32, kind: str, rng: np.random.Generator) -> F32:
    _, h, w = image.shape
    unit = min(h, w) / 28.0  # sizes below are for MNIST's 28x28
    if kind == "square":
        side = max(1, round(rng.integers(4, 8) * unit))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        paint = np.zeros((h, w))
        paint[top : top + side, left : left + side] = 1.0
        return _brighten(image, paint, rng.uniform(0.8, 1.0))
    if kind == "scratch":
        length, angle = rng.uniform(10, 20) * unit, rng.uniform(0, math.pi)
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        dy, dx = 0.5 * length * math.sin(angle), 0.5 * length * math.cos(angle)
        canvas = Image.new("L", (w, h), 0)
        width = max(1, round(rng.integers(1, 3) * unit))
        ImageDraw.Draw(canvas).line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=width)
        return _brighten(image, np.asarray(canvas) / 255.0, rng.uniform(0.8, 1.0))
    if kind == "blob":
        radius = rng.uniform(2, 4) * unit
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        yy, xx = np.mgrid[0:h, 0:w]
        paint = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (radius / 1.5) ** 2))
        return _brighten(image, np.clip(paint * 1.3, 0.0, 1.0), rng.uniform(0.7, 1.0))
    if kind in ("spot", "stain"):
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        distance2 = (yy - cy) ** 2 + (xx - cx) ** 2
        if kind == "spot":
            radius = rng.uniform(1, 2.5) * unit
            colour = rng.uniform(0.0, 0.3, size=(len(image), 1, 1))
            return np.where(distance2 <= radius**2, colour, image).astype(np.float32)
        radius = rng.uniform(2, 4) * unit
        opacity = rng.uniform(0.5, 0.9) * np.exp(-distance2 / (2 * (radius / 1.5) ** 2))  # (H, W)
        colour = rng.uniform(0.0, 1.0, size=(len(image), 1, 1))
        return (image * (1.0 - opacity) + colour * opacity).astype(np.float32)
    # missing: erase around a bright pixel, so the defect always takes something away
    grey = image.mean(axis=0)
    bright = np.argwhere(grey > 0.5)
    if len(bright) == 0:
        bright = np.argwhere(grey >= grey.max())
    cy, cx = bright[rng.integers(len(bright))]
    radius = rng.uniform(2.5, 4) * unit
    yy, xx = np.mgrid[0:h, 0:w]
    erased = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return np.where(erased[None], 0.0, image).astype(np.float32)


def _brighten(image: F32, paint: NDArray[np.float64], level: float) -> F32:
    """Paint `level` over the image with opacity `paint` (H, W) in [0, 1], never darkening a pixel."""
    painted = image * (1.0 - paint) + level * paint
    return np.maximum(image, painted).astype(np.float32)

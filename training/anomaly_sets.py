"""Image sets for anomaly evaluation: built-in out-of-distribution sets, folders and .npz.

Every set comes back as model inputs, float32 (N, C, H, W) in [0, 1], in the bundle's
input spec, and is deterministic for a seed. Nothing is downloaded: the built-in sets are
made from the built-in digits, numpy, Pillow's own font and scikit-learn's 8x8 digits.

    builtin:test          the bundle's own test split, rebuilt from its manifest (normal data)
    builtin:other-digits  built-in digits of the classes a one-class bundle was not trained on
    builtin:noise         i.i.d. uniform noise in [0, 1] per pixel
    builtin:inverted      the normal set's images, 1 - x
    builtin:rotated       the normal set's images rotated by 90 or 270 degrees (never 180:
                          a 6 turned by 180 degrees is a 9)
    builtin:letters       capital letters drawn with Pillow's bundled TrueType font (Aileron)
                          at random size, stroke width and offset; without I, O, Z, S, B, G,
                          whose glyphs look like digits
    builtin:digits8x8     scikit-learn's 8x8 digits, upscaled to the input size by the
                          service's own preprocessing (bilinear), as an 8x8 upload would be
    family:<set>          a set of the OOD family in training/ood_family.py (its selection
                          and report halves), e.g. family:letters-serif
"""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from model.bundle import InputSpec, Manifest
from model.preprocess import decode_image
from training.config import DataConfig
from training.data import bundle_splits
from training.formats import open_source
from training.sources import DataError

F32 = NDArray[np.float32]
BUILTIN = ("test", "other-digits", "noise", "inverted", "rotated", "letters", "digits8x8")
OOD_SETS = ("noise", "inverted", "rotated", "letters", "digits8x8")
LETTERS = "ACDEFHJKLMNPQRTUVWXY"  # A-Z without I, O, Z, S, B, G (digit look-alikes)


def load_set(name: str, manifest: Manifest, normal: F32 | None, n: int, seed: int) -> F32:
    """The set called `name` ("builtin:<set>", a folder or a .npz), at most n images."""
    spec = manifest.input
    rng = np.random.default_rng(seed)
    if name.startswith("family:"):
        from training.ood_family import make_set

        return make_set(name.removeprefix("family:"), manifest, normal, n, seed)
    if not name.startswith("builtin:"):
        config = DataConfig(source=name, channels=spec.channels, height=spec.height, width=spec.width,
                            resize=spec.resize, fit=spec.fit,
                            background=round(spec.background[0] * 255))  # fmt: skip
        source = open_source(config)
        return source.read(np.arange(min(n, len(source))))
    kind = name.removeprefix("builtin:")
    if kind == "test":
        return bundle_splits(manifest)["test"].array(n)
    if kind == "other-digits":
        return _other_digits(manifest, n, rng)
    if kind == "noise":
        return rng.random((n, spec.channels, spec.height, spec.width), dtype=np.float32)
    if kind in ("inverted", "rotated"):
        if normal is None:
            raise DataError(f"{name} transforms the normal set's images: give a normal set")
        images = normal[:n]
        if kind == "inverted":
            return (1.0 - images).astype(np.float32)
        turns = rng.choice([1, 3], size=len(images))  # quarter turns, counter-clockwise
        return np.stack([np.rot90(image, k, axes=(1, 2)) for image, k in zip(images, turns, strict=True)])
    if kind == "letters":
        return _letters(spec, n, rng)
    if kind == "digits8x8":
        return _digits8x8(spec, n, rng)
    raise DataError(f"unknown built-in set {name!r}; built-in sets: {', '.join('builtin:' + b for b in BUILTIN)}")


def _other_digits(manifest: Manifest, n: int, rng: np.random.Generator) -> F32:
    if manifest.dataset is None or manifest.dataset.source != "mnist" or not manifest.dataset.labels:
        raise DataError("builtin:other-digits needs a bundle trained on some classes of the built-in digits")
    digits = open_source(DataConfig())
    assert digits.labels is not None
    rows = np.flatnonzero(~np.isin(digits.labels, manifest.dataset.labels))
    return digits.read(np.sort(rng.choice(rows, size=min(n, len(rows)), replace=False)))


def _as_spec(grey: NDArray[np.uint8], spec: InputSpec) -> F32:
    """(H, W) uint8 -> (C, H, W) float32 through the service's preprocessing."""
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="PNG")
    return decode_image(buffer.getvalue(), spec)


def _letters(spec: InputSpec, n: int, rng: np.random.Generator) -> F32:
    """White capital letters on black, about as big and as thick as an MNIST digit."""
    side = 28  # drawn on MNIST's canvas, then converted to the spec's size
    images = []
    for _ in range(n):
        letter = LETTERS[rng.integers(len(LETTERS))]
        font = ImageFont.load_default(size=int(rng.integers(18, 25)))  # Pillow's bundled font, not the system's
        stroke = int(rng.integers(0, 3))
        canvas = Image.new("L", (side, side), 0)
        draw = ImageDraw.Draw(canvas)
        left, top, right, bottom = draw.textbbox((0, 0), letter, font=font, stroke_width=stroke)
        dx, dy = rng.integers(-2, 3, size=2)
        at = (side / 2 - (left + right) / 2 + dx, side / 2 - (top + bottom) / 2 + dy)
        draw.text(at, letter, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
        images.append(_as_spec(np.asarray(canvas), spec))
    return np.stack(images)


def _digits8x8(spec: InputSpec, n: int, rng: np.random.Generator) -> F32:
    from sklearn.datasets import load_digits  # ships inside scikit-learn: no download

    digits = load_digits().images  # (1797, 8, 8) in 0..16
    rows = np.sort(rng.choice(len(digits), size=min(n, len(digits)), replace=False))
    grey = np.round(digits[rows] * (255.0 / 16.0)).astype(np.uint8)
    return np.stack([_as_spec(image, spec) for image in grey])

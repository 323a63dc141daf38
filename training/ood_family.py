"""A broad family of out-of-distribution sets, split into a selection half and a report half.

    images = make_set("letters-serif", manifest, normal, n=150, seed=0)   # (n, C, H, W) in [0, 1]
    [s.name for s in FAMILY if s.half == "selection"]

Every set is made on the spot from a seed, from what ships with the project's training
install (no download): letters in fonts that matplotlib and Pillow ship, random strokes and
shapes, textures drawn here or cut from scikit-image's example images, the normal images
with synthetic defects (training/defects.py) or transformed (blurred, rotated, scaled,
shifted, inverted), scikit-learn's 8x8 digits, and noise of several kinds. Drawings are
made white on black and, like MNIST's digits, size-normalised into a 20x20 box and centred
by their centre of mass on a 28x28 canvas, then converted to the bundle's input spec by the
service's own preprocessing.

The protocol (docs/anomaly.md, "How scores are chosen"): the **selection** half is the
only one used to choose the default score and any hyper-parameter (which scores a
combination pools); the **report** half only gives the numbers we publish. The halves are
fixed here, one set of each kind of thing in each half, made differently (other fonts,
other shapes, other transformations, other noise), so a choice that only fits the
selection sets shows up in the report. Sets that transform the normal images take them
from `normal` (the bundle's test split).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from model.bundle import InputSpec, Manifest
from model.preprocess import decode_image
from training.defects import add_defects
from training.sources import DataError

F32 = NDArray[np.float32]
U8 = NDArray[np.uint8]
Half = Literal["selection", "report"]
_SIDE = 28  # drawings are made on MNIST's canvas, then converted to the input spec
_BOX = 20  # and fitted into MNIST's 20x20 box
# Letters whose glyphs pass for digits in some font are left out: O o D Q (0), I l i j (1),
# Z z (2), S s (5), G b (6), T (7), B (8), g q (9).
UPPER = "ACEFHJKLMNPRUVWXY"
LOWER = "acdefhkmnprtuvwxy"


@dataclass(frozen=True)
class Context:
    """What a set may draw on: the input spec and the normal images it transforms."""

    spec: InputSpec
    normal: F32 | None  # (N, C, H, W): the bundle's test split


Maker = Callable[[Context, int, np.random.Generator], F32]


@dataclass(frozen=True)
class OODSet:
    name: str
    half: Half
    kind: str  # letters, strokes and shapes, textures, defects, transformed digits, 8x8 digits, noise
    description: str
    make: Maker


# -- drawing helpers ------------------------------------------------------------------------


def _to_spec(grey: U8, spec: InputSpec) -> F32:
    """(H, W) uint8 -> (C, H, W) float32 through the service's preprocessing."""
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="PNG")
    return decode_image(buffer.getvalue(), spec)


def _mnist_style(drawing: Image.Image) -> U8:
    """MNIST's normalisation of a white-on-black drawing: crop to its ink, fit into a 20x20
    box keeping the aspect ratio, and centre its centre of mass on a 28x28 canvas."""
    box = drawing.getbbox()
    if box is None:
        return np.zeros((_SIDE, _SIDE), np.uint8)
    ink = drawing.crop(box)
    scale = _BOX / max(ink.size)
    ink = ink.resize((max(1, round(ink.width * scale)), max(1, round(ink.height * scale))), Image.Resampling.LANCZOS)
    pixels = np.asarray(ink, np.float64)
    yy, xx = np.mgrid[0 : pixels.shape[0], 0 : pixels.shape[1]]
    total = pixels.sum() or 1.0
    cy, cx = (yy * pixels).sum() / total, (xx * pixels).sum() / total
    canvas = Image.new("L", (_SIDE, _SIDE), 0)
    canvas.paste(ink, (round(_SIDE / 2 - cx), round(_SIDE / 2 - cy)))
    return np.asarray(canvas)


def _many(ctx: Context, n: int, draw: Callable[[], U8]) -> F32:
    return np.stack([_to_spec(draw(), ctx.spec) for _ in range(n)])


def _font_path(name: str) -> str:
    import matplotlib  # the train extra's plotting library ships the DejaVu, STIX and Computer Modern fonts

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name)


def _letters(fonts: list[str | None]) -> Maker:
    """Letters of both cases in `fonts` (None: Pillow's own bundled font), MNIST-style."""

    def make(ctx: Context, n: int, rng: np.random.Generator) -> F32:
        def draw() -> U8:
            font_name = fonts[rng.integers(len(fonts))]
            size = 96
            font = ImageFont.truetype(_font_path(font_name), size) if font_name else ImageFont.load_default(size=size)
            letter = (UPPER + LOWER)[rng.integers(len(UPPER) + len(LOWER))]
            canvas = Image.new("L", (2 * size, 2 * size), 0)
            stroke = int(rng.integers(0, 5))  # thicker or thinner, as handwriting varies
            ImageDraw.Draw(canvas).text((size // 2, size // 4), letter, fill=255, font=font, stroke_width=stroke,
                                        stroke_fill=255)  # fmt: skip
            return _mnist_style(canvas)

        return _many(ctx, n, draw)

    return make


def _pen(rng: np.random.Generator) -> int:
    return int(rng.integers(8, 15))  # on a 112-pixel canvas: 1.5 to 2.7 pixels once fitted to 20


def _strokes(ctx: Context, n: int, rng: np.random.Generator) -> F32:
    """Two to four random quadratic Bezier curves or polylines (one alone is often a 1 or a 7)."""

    def draw() -> U8:
        canvas = Image.new("L", (112, 112), 0)
        pen = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(2, 5))):
            points = rng.uniform(8, 104, size=(3, 2))
            if rng.random() < 0.5:
                t = np.linspace(0, 1, 40)[:, None]
                points = (1 - t) ** 2 * points[0] + 2 * (1 - t) * t * points[1] + t**2 * points[2]
            pen.line([tuple(p) for p in points], fill=255, width=_pen(rng), joint="curve")
        return _mnist_style(canvas)

    return _many(ctx, n, draw)


def _shapes(ctx: Context, n: int, rng: np.random.Generator) -> F32:
    """A filled disc or ellipse, or a rectangle, triangle or star, outlined or filled (an
    outlined circle or ellipse would be a 0)."""

    def draw() -> U8:
        canvas = Image.new("L", (112, 112), 0)
        pen = ImageDraw.Draw(canvas)
        kind = rng.integers(5)
        filled = kind < 2 or rng.random() < 0.3
        fill, width = (255 if filled else None), _pen(rng)
        cx, cy, r = 56, 56, rng.uniform(25, 45)
        if kind == 0:
            pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=255, width=width)
        elif kind == 1:
            ry = r * rng.uniform(0.35, 0.7)
            pen.ellipse((cx - r, cy - ry, cx + r, cy + ry), fill=fill, outline=255, width=width)
        elif kind == 2:
            ry = r * rng.uniform(0.4, 1.0)
            pen.rectangle((cx - r, cy - ry, cx + r, cy + ry), fill=fill, outline=255, width=width)
        else:
            corners = 3 if kind == 3 else 10
            turn = rng.uniform(0, 2 * math.pi)
            radii = [r if (i % 2 == 0 or corners == 3) else r * 0.45 for i in range(corners)]
            points = [(cx + radii[i] * math.cos(turn + 2 * math.pi * i / corners),
                       cy + radii[i] * math.sin(turn + 2 * math.pi * i / corners)) for i in range(corners)]  # fmt: skip
            pen.polygon(points, fill=fill, outline=255, width=width)
        image = canvas.rotate(float(rng.uniform(0, 360)), resample=Image.Resampling.BILINEAR)
        return _mnist_style(image)

    return _many(ctx, n, draw)


def _drawn_textures(ctx: Context, n: int, rng: np.random.Generator) -> F32:
    """Full-frame periodic patterns: gratings at any angle, checkerboards, grids and dot lattices."""

    def draw() -> U8:
        yy, xx = np.mgrid[0:_SIDE, 0:_SIDE].astype(np.float64)
        period, angle = rng.uniform(3, 9), rng.uniform(0, math.pi)
        u = xx * math.cos(angle) + yy * math.sin(angle)
        v = -xx * math.sin(angle) + yy * math.cos(angle)
        kind = rng.integers(4)
        if kind == 0:
            pattern = 0.5 + 0.5 * np.sin(2 * math.pi * u / period)
        elif kind == 1:
            pattern = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float64)
        elif kind == 2:
            pattern = ((np.abs((u % period) - period / 2) < 1) | (np.abs((v % period) - period / 2) < 1)) * 1.0
        else:
            pattern = (((u % period) - period / 2) ** 2 + ((v % period) - period / 2) ** 2 < (period / 4) ** 2) * 1.0
        return np.round(255 * pattern).astype(np.uint8)

    return _many(ctx, n, draw)


def _photo_textures(ctx: Context, n: int, rng: np.random.Generator) -> F32:
    """Random crops (40 to 120 pixels, shrunk to 28) of scikit-image's grey example images:
    brick, grass, gravel, the camera man, the moon, coins and a page of text."""
    try:
        from skimage import data  # the train extra: its example images ship inside the wheel
    except ImportError:
        raise DataError("textures-photo needs scikit-image (pip install 'vaeserve[train]')") from None
    names = ("brick", "grass", "gravel", "camera", "moon", "coins", "text")
    sources = [getattr(data, name)() for name in names]  # (H, W) uint8 each

    def draw() -> U8:
        source = sources[rng.integers(len(sources))]
        side = int(rng.integers(40, min(121, *source.shape)))
        top, left = rng.integers(0, source.shape[0] - side + 1), rng.integers(0, source.shape[1] - side + 1)
        crop = Image.fromarray(source[top : top + side, left : left + side])
        return np.asarray(crop.resize((_SIDE, _SIDE), Image.Resampling.LANCZOS))

    return _many(ctx, n, draw)


def _digits8x8(framed: bool) -> Maker:
    """scikit-learn's 8x8 digits: the whole frame upscaled as an 8x8 upload would be, or
    `framed`, upscaled into a 20x20 box and centred on a 28x28 canvas as MNIST's digits are."""

    def make(ctx: Context, n: int, rng: np.random.Generator) -> F32:
        from sklearn.datasets import load_digits  # ships inside scikit-learn: no download

        digits = load_digits().images  # (1797, 8, 8) in 0..16
        rows = rng.choice(len(digits), size=n, replace=n > len(digits))
        grey = np.round(digits[rows] * (255.0 / 16.0)).astype(np.uint8)
        if not framed:
            return np.stack([_to_spec(image, ctx.spec) for image in grey])
        big = [Image.fromarray(image).resize((80, 80), Image.Resampling.BILINEAR) for image in grey]
        return np.stack([_to_spec(_mnist_style(image), ctx.spec) for image in big])

    return make


# -- sets made from the normal images -------------------------------------------------------


def _normal(ctx: Context, n: int, rng: np.random.Generator, name: str) -> F32:
    if ctx.normal is None or len(ctx.normal) == 0:
        raise DataError(f"{name} transforms the normal images: give a normal set")
    return ctx.normal[rng.choice(len(ctx.normal), size=n, replace=n > len(ctx.normal))]


def _defective(kind: str) -> Maker:
    def make(ctx: Context, n: int, rng: np.random.Generator) -> F32:
        images, _ = add_defects(_normal(ctx, n, rng, f"defect-{kind}"), kind, rng)
        return images

    return make


def _per_image(name: str, transform: Callable[[Image.Image, np.random.Generator], Image.Image]) -> Maker:
    """A PIL transformation of each normal image, channel by channel."""

    def make(ctx: Context, n: int, rng: np.random.Generator) -> F32:
        out = []
        for image in _normal(ctx, n, rng, name):
            channels = [Image.fromarray(np.round(255 * c).astype(np.uint8)) for c in image]
            moved = [np.asarray(transform(c, rng), np.float32) / 255.0 for c in channels]
            out.append(np.stack(moved))
        return np.stack(out)

    return make


def _rotate_quarter(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return image.rotate(90 if rng.random() < 0.5 else 270)  # never 180: a 6 turned by 180 degrees is a 9


def _rotate_oblique(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    angle = rng.uniform(45, 135) * (1 if rng.random() < 0.5 else -1)
    return image.rotate(float(angle), resample=Image.Resampling.BILINEAR)


def _blur(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(1.5, 2.5)) * image.width / _SIDE))


def _shift(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    angle, distance = rng.uniform(0, 2 * math.pi), rng.uniform(5, 8) * image.width / _SIDE
    dx, dy = round(distance * math.cos(angle)), round(distance * math.sin(angle))
    return image.transform(image.size, Image.Transform.AFFINE, (1, 0, -dx, 0, 1, -dy))


def _scale(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    factor = rng.uniform(0.4, 0.6) if rng.random() < 0.5 else rng.uniform(1.5, 1.8)
    w, h = image.size
    c = 1.0 / factor  # about the centre: output (x, y) reads input centre + (x - centre) / factor
    return image.transform(image.size, Image.Transform.AFFINE, (c, 0, w / 2 * (1 - c), 0, c, h / 2 * (1 - c)),
                           resample=Image.Resampling.BILINEAR)  # fmt: skip


def _inverted(ctx: Context, n: int, rng: np.random.Generator) -> F32:
    return (1.0 - _normal(ctx, n, rng, "inverted")).astype(np.float32)


# -- noise ------------------------------------------------------------------------------------


def _shape(ctx: Context, n: int) -> tuple[int, int, int, int]:
    return (n, ctx.spec.channels, ctx.spec.height, ctx.spec.width)


def _noise_uniform(ctx: Context, n: int, rng: np.random.Generator) -> F32:
    return rng.random(_shape(ctx, n), dtype=np.float32)


def _noise_salt_pepper(ctx: Context, n: int, rng: np.random.Generator) -> F32:
    """Black images with 5 to 30 % of their pixels white."""
    density = rng.uniform(0.05, 0.3, size=(n, 1, 1, 1))
    grey = (rng.random((n, 1, ctx.spec.height, ctx.spec.width)) < density).astype(np.float32)
    return np.repeat(grey, ctx.spec.channels, axis=1)


def _noise_smooth(ctx: Context, n: int, rng: np.random.Generator) -> F32:
    """Gaussian noise blurred by 1 to 3 pixels, stretched to [0, 1]: soft blobs of every size."""

    def draw() -> U8:
        raw = rng.standard_normal((_SIDE, _SIDE))
        blurred = Image.fromarray(np.round(127.5 + 40 * raw).clip(0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(radius=float(rng.uniform(1, 3)))
        )
        pixels = np.asarray(blurred, np.float64)
        span = np.ptp(pixels) or 1.0
        return np.round(255 * (pixels - pixels.min()) / span).astype(np.uint8)

    return _many(ctx, n, draw)


def _constant(ctx: Context, n: int, rng: np.random.Generator) -> F32:
    """Flat images of one grey level each, black included (the blank image that fools likelihoods)."""
    levels = rng.choice([0.0, 1.0, *rng.uniform(0, 1, size=8)], size=(n, 1, 1, 1))
    return np.broadcast_to(levels, _shape(ctx, n)).astype(np.float32)


FAMILY: tuple[OODSet, ...] = (
    # selection half
    OODSet("letters-sans", "selection", "letters", "DejaVu Sans and Sans Bold, both cases", _letters(
        ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf"])),
    OODSet("letters-mono", "selection", "letters", "DejaVu Sans Mono and Mono Bold, both cases", _letters(
        ["DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf"])),
    OODSet("strokes", "selection", "strokes and shapes", "2 to 4 random Bezier curves or polylines", _strokes),
    OODSet("textures-drawn", "selection", "textures", "gratings, checkerboards, grids, dot lattices", _drawn_textures),
    OODSet("defect-square", "selection", "defects", "normal images with a bright square", _defective("square")),
    OODSet("defect-scratch", "selection", "defects", "normal images with a bright scratch", _defective("scratch")),
    OODSet("rotated", "selection", "transformed", "normal images turned by 90 or 270 degrees",
           _per_image("rotated", _rotate_quarter)),
    OODSet("blurred", "selection", "transformed", "normal images, Gaussian blur of radius 1.5 to 2.5 px",
           _per_image("blurred", _blur)),
    OODSet("shifted", "selection", "transformed", "normal images moved by 5 to 8 px", _per_image("shifted", _shift)),
    OODSet("digits8x8", "selection", "8x8 digits", "scikit-learn's 8x8 digits, the whole frame upscaled",
           _digits8x8(framed=False)),
    OODSet("noise-uniform", "selection", "noise", "i.i.d. uniform noise per pixel", _noise_uniform),
    OODSet("noise-salt-pepper", "selection", "noise", "black with 5 to 30 % white pixels", _noise_salt_pepper),
    # report half
    OODSet("letters-serif", "report", "letters", "DejaVu Serif, Serif Bold, STIX and Computer Modern, both cases",
           _letters(["DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "STIXGeneral.ttf", "cmr10.ttf"])),
    OODSet("letters-pillow", "report", "letters", "Pillow's bundled font (Aileron), both cases", _letters([None])),
    OODSet("shapes", "report", "strokes and shapes", "discs, ellipses, rectangles, triangles, stars", _shapes),
    OODSet("textures-photo", "report", "textures", "crops of scikit-image's brick, grass, gravel, camera, moon, "
           "coins, text", _photo_textures),
    OODSet("defect-blob", "report", "defects", "normal images with a bright soft blob", _defective("blob")),
    OODSet("defect-missing", "report", "defects", "normal images with part of a stroke erased", _defective("missing")),
    OODSet("rotated-oblique", "report", "transformed", "normal images turned by 45 to 135 degrees either way",
           _per_image("rotated-oblique", _rotate_oblique)),
    OODSet("scaled", "report", "transformed", "normal images shrunk to 0.4-0.6 or enlarged to 1.5-1.8 times",
           _per_image("scaled", _scale)),
    OODSet("inverted", "report", "transformed", "normal images, 1 - x", _inverted),
    OODSet("digits8x8-framed", "report", "8x8 digits", "scikit-learn's 8x8 digits fitted into MNIST's 20x20 box",
           _digits8x8(framed=True)),
    OODSet("noise-smooth", "report", "noise", "blurred Gaussian noise, stretched to [0, 1]", _noise_smooth),
    OODSet("constant", "report", "noise", "flat images of one grey level, black and white included", _constant),
)  # fmt: skip
SETS = {s.name: s for s in FAMILY}


def half(which: Half) -> list[OODSet]:
    """The sets of one half, in the order above."""
    return [s for s in FAMILY if s.half == which]


def make_set(name: str, manifest: Manifest, normal: F32 | None, n: int, seed: int) -> F32:
    """n images of the family's set `name`, float32 (n, C, H, W) in [0, 1]; the same for the same seed.

    Each set draws from its own generator, seeded by (seed, the set's place in FAMILY), so
    adding a set never changes the others.
    """
    if name not in SETS:
        raise DataError(f"unknown set {name!r}; the family's sets: {', '.join(SETS)}")
    index = list(SETS).index(name)
    rng = np.random.default_rng([seed, index])
    return SETS[name].make(Context(manifest.input, normal), n, rng)

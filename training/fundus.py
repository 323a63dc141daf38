"""Colour patches of a retinal fundus photograph, written as an image folder for `python -m training`.

    python -m training.fundus runs/fundus/patches        # ~3,000 PNGs of 64 x 64 RGB, a few seconds
    python -m training --config training/configs/fundus.toml --data runs/fundus/patches --out model/zoo/fundus-vae/1

(`make texture-model` runs both.) The photograph is scikit-image's `data.retina()` (1411 x
1411 RGB, shipped in its wheel): the orange-red background of a healthy retina with its
vessels, a homogeneous colour surface whose defects (spots, stains, scratches on the lens)
are what a screening model must find; docs/anomaly.md says why this one.

Patches are 64 x 64, cut every STRIDE pixels, fully inside the fundus (every pixel's red
channel above FUNDUS_RED) and clear of the optic disc (its own structure, seen once per eye).
They overlap, so a random split of them would put pixels of the training patches into the
calibration and test patches. Instead the image is cut into BLOCK x BLOCK blocks, each drawn
(seeded) for one split, a patch belongs to the split of every block it touches (patches
across two splits are dropped), and the folder's files are named so that training's own
seeded split (`training.data.split`, from the config's fractions and split_seed) puts each
patch into the split of its blocks: no pixel of a test, calibration or validation patch was
ever trained on. Each file is named `<row>_<split>_y<top>_x<left>.png`, so its row, its
split and its place in the photograph can be read off its name.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from training.config import DataConfig, load_config
from training.data import SPLITS, split

log = logging.getLogger(__name__)

CONFIG = Path(__file__).resolve().parent / "configs" / "fundus.toml"
PATCH = 64  # pixels a side
STRIDE = 16
BLOCK = 192  # the unit of the spatial split
FUNDUS_RED = 0.15  # the fundus is where the red channel is above this (the surround is black)
OPTIC_DISC = (650, 230, 150)  # centre row, centre column, radius, pixels: found by its bright green (> 0.6)
HELD_OUT = 0.07  # of the patches, at least, for each of test, calibration and validation
SEED = 0


@dataclass(frozen=True)
class Patch:
    top: int
    left: int
    split: str


def retina() -> NDArray[np.uint8]:
    """scikit-image's fundus photograph (1411, 1411, 3), from its wheel (nothing downloaded)."""
    from skimage import data  # a training dependency

    return np.asarray(data.retina(), np.uint8)  # type: ignore[no-untyped-call]


def cut(image: NDArray[np.uint8], seed: int = SEED) -> list[Patch]:
    """Every patch position inside the fundus and clear of the optic disc, with its blocks' split."""
    h, w, _ = image.shape
    inside = image[..., 0] > FUNDUS_RED * 255
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx, radius = OPTIC_DISC
    usable = inside & ((yy - cy) ** 2 + (xx - cx) ** 2 > radius**2)
    usable_sum = np.pad(usable, ((1, 0), (1, 0))).cumsum(0).cumsum(1)  # integral image: count per window
    tops, lefts = range(0, h - PATCH + 1, STRIDE), range(0, w - PATCH + 1, STRIDE)
    whole = {(t, x) for t in tops for x in lefts if _window(usable_sum, t, x) == PATCH * PATCH}
    rows, cols = -(-h // BLOCK), -(-w // BLOCK)
    per_block = np.zeros((rows, cols), np.int64)  # patches that fit inside one block
    for t, x in whole:
        if t // BLOCK == (t + PATCH - 1) // BLOCK and x // BLOCK == (x + PATCH - 1) // BLOCK:
            per_block[t // BLOCK, x // BLOCK] += 1
    # Held-out splits take whole blocks, in a seeded order, until each holds HELD_OUT of the patches.
    order = iter(np.random.default_rng(seed).permutation(np.flatnonzero(per_block)))
    block_split = np.full((rows, cols), "train", dtype=object)
    for name in ("test", "calibration", "validation"):
        held = 0
        while held < HELD_OUT * len(whole):
            b = next(order)
            block_split.flat[b] = name
            held += per_block.flat[b]
    patches = []
    for top, left in sorted(whole):
        b, r = top + PATCH, left + PATCH
        splits = set(block_split[top // BLOCK : (b - 1) // BLOCK + 1, left // BLOCK : (r - 1) // BLOCK + 1].flat)
        if len(splits) == 1:
            patches.append(Patch(top, left, splits.pop()))
    return patches


def _window(integral: NDArray[np.int64], top: int, left: int) -> int:
    """How many usable pixels the patch at (top, left) holds, from the integral image."""
    b, r = top + PATCH, left + PATCH
    return int(integral[b, r] - integral[top, r] - integral[b, left] + integral[top, left])


def assign_rows(patches: list[Patch], config: DataConfig, seed: int = SEED) -> dict[int, Patch]:
    """Row -> patch, for the largest dataset whose seeded split (`training.data.split`) gives
    each split no more patches than its blocks hold; each split's patches are a seeded draw."""
    available = {name: [p for p in patches if p.split == name] for name in SPLITS}
    for rows in range(len(patches), 0, -1):
        indices, spec = split(rows, config)
        if all(spec.counts[name] <= len(available[name]) for name in SPLITS):
            break
    else:
        raise ValueError("no patches")
    rng = np.random.default_rng(seed)
    assigned: dict[int, Patch] = {}
    for name in SPLITS:
        chosen = rng.choice(len(available[name]), size=len(indices[name]), replace=False)
        for row, i in zip(indices[name], np.sort(chosen), strict=True):
            assigned[int(row)] = available[name][i]
    return assigned


def split_patches(name: str, limit: int, config: DataConfig) -> NDArray[np.float32]:
    """The first `limit` patches (N, 3, 64, 64) in [0, 1] of split `name`, in the order training
    reads them from the folder `write` makes: without the folder (tests, re-checks)."""
    image = retina()
    rows = assign_rows(cut(image), config)
    indices, _ = split(len(rows), config)
    tiles = [
        image[p.top : p.top + PATCH, p.left : p.left + PATCH] for p in (rows[int(i)] for i in indices[name][:limit])
    ]
    return np.moveaxis(np.stack(tiles), -1, 1).astype(np.float32) / np.float32(255.0)


def write(folder: Path, config: DataConfig) -> dict[str, int]:
    """Write the patches as PNGs into `folder` (made; must be empty); patches per split."""
    image = retina()
    rows = assign_rows(cut(image), config)
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty")
    width = len(str(len(rows) - 1))
    for row, p in sorted(rows.items()):
        tile = image[p.top : p.top + PATCH, p.left : p.left + PATCH]
        Image.fromarray(tile).save(folder / f"{row:0{width}d}_{p.split}_y{p.top:04d}_x{p.left:04d}.png")
    return {name: sum(p.split == name for p in rows.values()) for name in SPLITS}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.fundus", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="where to write the patches (made; must be empty)")
    p.add_argument("--config", type=Path, default=CONFIG, help="the training config whose split to match")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    counts = write(args.folder, load_config(args.config, []).data)
    log.info("wrote %d patches to %s: %s", sum(counts.values()), args.folder,
             ", ".join(f"{n} {name}" for name, n in counts.items()))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The fundus patches: a spatial split that training's own seeded split reproduces, no pixel shared."""

from __future__ import annotations

import numpy as np

from training.config import load_config
from training.data import SPLITS, split
from training.fundus import CONFIG, PATCH, assign_rows, cut, retina


def test_no_pixel_of_a_held_out_patch_was_trained_on_and_the_cli_split_agrees() -> None:
    image = retina()
    config = load_config(CONFIG, []).data
    rows = assign_rows(cut(image), config)
    indices, _ = split(len(rows), config)  # what `python -m training` will do with the folder's rows
    assert sorted(rows) == list(range(len(rows)))
    for name in SPLITS:
        assert {rows[int(i)].split for i in indices[name]} == {name}
    covered = {name: np.zeros(image.shape[:2], bool) for name in SPLITS}
    for p in rows.values():
        covered[p.split][p.top : p.top + PATCH, p.left : p.left + PATCH] = True
        assert (image[p.top : p.top + PATCH, p.left : p.left + PATCH, 0] > 0.15 * 255).all()  # inside the fundus
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            assert not (covered[a] & covered[b]).any(), (a, b)
    counts = {name: len(indices[name]) for name in SPLITS}
    assert counts["calibration"] >= 100 and counts["train"] > 2000  # enough for a 1 % threshold, and to learn

"""AUPRO and pixel AUROC on hand-built maps with known answers, and against a brute-force computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from training.localisation import aupro, pixel_auroc, pro_curve


def _two_regions() -> np.ndarray:
    masks = np.zeros((2, 10, 10), bool)
    masks[0, 0, 0] = True  # region A: one pixel
    masks[0, 5:7, 5:7] = True  # region B: four pixels
    return masks


def test_a_perfect_map_scores_one_and_a_flat_map_scores_the_diagonal() -> None:
    masks = _two_regions()
    assert aupro(masks * 1.0, masks) == pytest.approx(1.0)
    assert pixel_auroc(masks * 1.0, masks) == 1.0
    # A flat map flags every pixel at once: the curve is the segment (0, 0) - (1, 1), whose
    # area up to FPR 0.3 is 0.3^2 / 2, i.e. 0.15 once divided by 0.3.
    assert aupro(np.zeros(masks.shape), masks) == pytest.approx(0.15)
    assert pixel_auroc(np.zeros(masks.shape), masks) == 0.5


def test_regions_count_alike_whatever_their_size() -> None:
    """Region A (1 pixel) above every normal pixel, region B (4 pixels) below every one: PRO is
    1/2 from FPR 0 on, whatever B's size, so AUPRO is 0.5; pixel AUROC weighs pixels instead."""
    masks = _two_regions()
    maps = np.arange(200, dtype=float).reshape(2, 10, 10) / 200
    maps[0, 0, 0], maps[0, 5:7, 5:7] = 10.0, -1.0
    assert aupro(maps, masks) == pytest.approx(0.5)
    assert pixel_auroc(maps, masks) == pytest.approx(1 / 5)  # 1 of 5 defect pixels above all 195 normal ones
    fpr, pro = pro_curve(maps, masks)
    assert (fpr[0], pro[0]) == (0.0, 0.0) and (fpr[1], pro[1]) == (0.0, 0.5)
    assert fpr[-1] == 1.0 and pro[-1] == pytest.approx(1.0)


def test_the_limit_cuts_a_segment_by_linear_interpolation() -> None:
    """One defect pixel tied with half the normal pixels, the rest of the normal pixels above:
    the curve runs flat at PRO 0 to FPR 0.5, then rises linearly to (1, 1), so AUPRO up to
    FPR 0.3 is 0 and up to 1 is the triangle's 0.25."""
    masks = np.zeros((1, 1, 11), bool)
    masks[0, 0, 0] = True
    maps = np.array([[[0.0] * 6 + [1.0] * 5]])
    assert aupro(maps, masks) == 0.0
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.25)
    assert aupro(maps, masks, fpr_limit=0.75) == pytest.approx((0.25 * 0.5 / 2) / 0.75)


def test_regions_are_eight_connected() -> None:
    masks = np.zeros((1, 6, 6), bool)
    masks[0, 1, 1] = masks[0, 2, 2] = True  # touching at a corner: one region
    masks[0, 4, 4] = True  # another
    maps = np.zeros(masks.shape)
    maps[0, 1, 1] = 1.0  # half of the first region, none of the second
    _, pro = pro_curve(maps, masks)
    assert pro[1] == pytest.approx(0.25)  # (1/2 + 0) / 2 regions


def _brute_force(maps: np.ndarray, masks: np.ndarray, limit: float = 0.3) -> float:
    """The definition, threshold by threshold: mean overlap of every region, FPR over normal pixels."""
    regions = []
    for i, mask in enumerate(masks):
        labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [(i, labels == k) for k in range(1, count + 1)]
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        flagged = maps >= t
        fprs.append((flagged & ~masks).sum() / (~masks).sum())
        pros.append(np.mean([(flagged[i] & region).sum() / region.sum() for i, region in regions]))
    fprs, pros = np.array(fprs), np.array(pros)
    inside = fprs <= limit
    x, y = np.r_[fprs[inside], limit], np.r_[pros[inside], np.interp(limit, fprs, pros)]
    return float(np.trapezoid(y, x) / limit)


@pytest.mark.parametrize("seed", range(6))
def test_aupro_matches_the_brute_force_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    masks = np.zeros((3, 12, 12), bool)
    for i in range(2):
        for _ in range(3):
            y, x = rng.integers(0, 10, 2)
            masks[i, y : y + rng.integers(1, 4), x : x + rng.integers(1, 4)] = True
    maps = np.round(rng.random(masks.shape) + masks * rng.uniform(0, 1), 1)  # rounded: many ties
    assert aupro(maps, masks) == pytest.approx(_brute_force(maps, masks), abs=1e-12)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one defect region and one normal pixel"):
        aupro(np.zeros((1, 3, 3)), np.zeros((1, 3, 3), bool))
    with pytest.raises(ValueError, match=r"must both be \(N, H, W\)"):
        aupro(np.zeros((3, 3)), np.zeros((3, 3), bool))

"""The OOD family (two fixed halves of seeded sets) and synthetic defects with exact masks."""

from __future__ import annotations

import numpy as np
import pytest

from model.bundle import Bundle
from training.data import DataError, bundle_arrays
from training.defects import COLOUR_DEFECTS, DEFECTS, MASK_CHANGE, MIN_PIXELS, add_defects
from training.ood_family import FAMILY, half, make_set


def test_the_halves_are_fixed_disjoint_and_hold_every_kind() -> None:
    selection, report = {s.name for s in half("selection")}, {s.name for s in half("report")}
    assert not selection & report and selection | report == {s.name for s in FAMILY}
    assert len(selection) == len(report) == 12
    kinds = {which: {s.kind for s in half(which)} for which in ("selection", "report")}
    assert kinds["selection"] == kinds["report"]  # one of each kind of thing in each half
    assert {"letters-pillow", "letters-serif", "textures-photo", "constant"} <= report
    assert {"letters-sans", "strokes", "rotated", "noise-uniform"} <= selection


@pytest.mark.parametrize("name", [s.name for s in FAMILY])
def test_every_set_is_seeded_model_input(bundle: Bundle, name: str) -> None:
    normal = bundle_arrays(bundle.manifest)["test"]
    images = make_set(name, bundle.manifest, normal, 6, seed=4)
    assert images.shape == (6, 1, 28, 28) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_array_equal(images, make_set(name, bundle.manifest, normal, 6, seed=4))
    assert not np.array_equal(images, make_set(name, bundle.manifest, normal, 6, seed=5))
    for image in images:  # no set holds the normal images themselves
        assert not any(np.array_equal(image, n) for n in normal)


def test_sets_that_transform_the_normal_images_need_them(bundle: Bundle) -> None:
    with pytest.raises(DataError, match="rotated transforms the normal images: give a normal set"):
        make_set("rotated", bundle.manifest, None, 3, 0)
    with pytest.raises(DataError, match="unknown set 'cats'"):
        make_set("cats", bundle.manifest, None, 3, 0)


@pytest.mark.parametrize("kind", DEFECTS)
def test_defect_masks_are_exactly_the_changed_pixels(digit_images: np.ndarray, kind: str) -> None:
    clean = digit_images[:20]
    images, masks = add_defects(clean, kind, np.random.default_rng(0))
    assert images.shape == clean.shape and masks.shape == (20, 28, 28) and masks.dtype == bool
    changed = np.abs(images - clean).max(axis=1)
    np.testing.assert_array_equal(masks, changed > MASK_CHANGE)
    assert (masks.sum(axis=(1, 2)) >= MIN_PIXELS).all()
    if kind == "missing":
        assert (images <= clean).all()  # only takes away
    else:
        assert (images >= clean).all()  # only brightens
    again, _ = add_defects(clean, kind, np.random.default_rng(0))
    np.testing.assert_array_equal(images, again)


@pytest.mark.parametrize("kind", COLOUR_DEFECTS)
def test_colour_defects_on_fundus_patches(kind: str) -> None:
    from training.fundus import PATCH, retina

    photo = retina()[600:728, 800:928]  # (128, 128, 3) of the retina's background, vessels included
    tiles = [photo[y : y + PATCH, x : x + PATCH] for y in (0, 64) for x in (0, 64)]
    clean = np.moveaxis(np.stack(tiles), -1, 1).astype(np.float32) / 255  # (4, 3, 64, 64)
    images, masks = add_defects(clean, kind, np.random.default_rng(1))
    assert images.shape == clean.shape and masks.shape == (4, 64, 64) and 0 <= images.min() <= images.max() <= 1
    np.testing.assert_array_equal(masks, np.abs(images - clean).max(axis=1) > MASK_CHANGE)
    assert (masks.sum(axis=(1, 2)) >= MIN_PIXELS).all()
    if kind == "spot":  # a dark disc: every channel of every pixel on it at most 0.3
        assert (np.moveaxis(images, 1, -1)[masks] <= 0.3 + 1e-6).all()
    if kind == "stain":  # a colour of its own: not just brighter or darker
        assert masks.sum() > 4 * 20


def test_unknown_defect() -> None:
    with pytest.raises(ValueError, match="unknown defect 'dent'"):
        add_defects(np.zeros((1, 1, 28, 28), np.float32), "dent", np.random.default_rng(0))

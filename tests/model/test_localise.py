"""Heatmaps against the calibration's pixel threshold, masks that agree with the decision, overlays."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from model.bundle import Bundle
from model.decision import decide, threshold_at_fpr
from model.localise import OVERLAY_OPACITY, anomaly_masks, overlay, overlay_png, pixel_maps, pixel_threshold
from model.preprocess import COLORMAP
from model.runtime import VAERuntime, batched_scores
from training.data import bundle_arrays


def test_pixel_maps_sum_the_channels() -> None:
    values = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(pixel_maps(values), values.sum(axis=1))


def test_the_pixel_threshold_is_exceeded_by_at_most_the_rate_of_normal_maps() -> None:
    maps = np.random.default_rng(0).gamma(2.0, size=(200, 6, 6))
    for fpr in (0.01, 0.05, 0.2):
        t = pixel_threshold(maps, fpr)
        assert (maps > t).any(axis=(1, 2)).mean() <= fpr
        assert (maps >= t).any(axis=(1, 2)).mean() > fpr - 1 / 200  # and no higher than it needs to be
        assert t == threshold_at_fpr(maps.max(axis=(1, 2)), fpr)


def test_masks_are_empty_for_images_judged_normal() -> None:
    maps = np.zeros((3, 4, 4))
    maps[:, 1, 2] = 5.0
    masks = anomaly_masks(maps, 1.0, np.array([True, False, True]))
    assert masks[0].sum() == masks[2].sum() == 1 and masks[0, 1, 2] and not masks[1].any()


def test_overlay_leaves_a_quiet_map_alone_and_colours_what_is_over_the_threshold() -> None:
    image = np.full((1, 2, 2), 0.5, np.float32)
    pixel_map = np.array([[0.0, 0.5], [1.0, 9.0]])
    out = overlay(image, pixel_map, threshold=1.0)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [128, 128, 128])  # map 0: the input, grey to RGB
    top = np.round((1 - OVERLAY_OPACITY) * 128 + OVERLAY_OPACITY * COLORMAP[255].astype(float))
    np.testing.assert_array_equal(out[1, 1], top)  # far over: the brightest colour, at full opacity
    half = np.round((1 - OVERLAY_OPACITY / 2) * 128 + OVERLAY_OPACITY / 2 * COLORMAP[64].astype(float))
    np.testing.assert_array_equal(out[0, 1], half)  # half the threshold: half the opacity
    with Image.open(io.BytesIO(overlay_png(image, pixel_map, 1.0))) as png:
        assert png.size == (2, 2) and png.mode == "RGB"


@pytest.fixture(scope="module")
def runtime(bundle: Bundle) -> VAERuntime:
    return VAERuntime(bundle)


def test_the_calibration_holds_the_pixel_threshold_of_its_split(runtime: VAERuntime) -> None:
    cal = runtime.manifest.calibration
    images = bundle_arrays(runtime.manifest)["calibration"]
    scores = batched_scores(runtime, images, cal.importance_samples, cal.seed)
    assert cal.pixel_threshold == pytest.approx(pixel_threshold(pixel_maps(scores.pixel_nll), cal.false_positive_rate))


def test_normal_maps_are_quiet_and_a_bright_square_lights_up(runtime: VAERuntime) -> None:
    cal = runtime.manifest.calibration
    test = bundle_arrays(runtime.manifest)["test"][:40]
    normal = runtime.score(test, 4, 0)
    maps = pixel_maps(normal.pixel_nll)
    assert (maps > cal.pixel_threshold).any(axis=(1, 2)).mean() <= 0.1  # calibrated at 1 %, on other images
    patched = test.copy()
    patched[:, :, 20:26, 20:26] = np.maximum(patched[:, :, 20:26, 20:26], 1.0)
    scored = runtime.score(patched, 4, 0)
    patched_maps = pixel_maps(scored.pixel_nll)
    inside = patched_maps[:, 20:26, 20:26].max(axis=(1, 2))
    assert np.median(inside) > cal.pixel_threshold  # the square is where the map goes over
    verdicts = decide(cal, scored.scores).is_anomaly
    masks = anomaly_masks(patched_maps, cal.pixel_threshold, verdicts)
    assert not masks[~verdicts].any()

"""Where an image is anomalous: heatmaps normalised by the calibration, binary masks, overlays.

    maps = pixel_maps(scores.pixel_nll)                           # (N, H, W), nats per pixel
    threshold = pixel_threshold_of(manifest)                      # NoPixelThresholdError without one
    masks = anomaly_masks(maps, threshold, decision.is_anomaly)
    heat, mask, over = heatmap_png(maps[0], threshold), mask_png(masks[0]), overlay_png(images[0], maps[0], threshold)

The map is -log p(x_i | z = posterior mean) summed over a pixel's channels: the per-pixel
part of `posterior_mean_nll`, what the model cannot explain from the image's own code.
Maps are compared with one threshold fitted on the calibration split (`pixel_threshold`),
not scaled per image, so a normal image's map stays quiet and a map only lights up where
the calibration's normal images never did. A mask is empty when the image is judged normal,
so masks and decisions always agree.
"""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from model.bundle import Manifest
from model.decision import threshold_at_fpr
from model.errors import InputError
from model.preprocess import COLORMAP, to_uint8

F64 = NDArray[np.float64]
OVERLAY_OPACITY = 0.7  # of the colour where the map reaches the threshold


class NoPixelThresholdError(InputError):
    """Masks or overlays asked of a bundle whose calibration has no pixel threshold."""

    def __init__(self, model: str, version: str) -> None:
        super().__init__(
            f"masks and overlays need the calibration's pixel threshold, and model {model!r} version {version!r} "
            "has none (no calibration, or one older than pixel thresholds): re-calibrate it with "
            "python -m training.calibrate"
        )


def pixel_threshold_of(manifest: Manifest) -> float:
    """The bundle's `calibration.pixel_threshold` (nats per pixel); NoPixelThresholdError without one."""
    cal = manifest.calibration
    if cal is None or cal.pixel_threshold is None:
        raise NoPixelThresholdError(manifest.name, manifest.version)
    return cal.pixel_threshold


def pixel_maps(pixel_nll: NDArray[np.floating]) -> F64:
    """Per-pixel maps (N, H, W) from per-channel values (N, C, H, W): the sum over channels."""
    return np.asarray(pixel_nll, np.float64).sum(axis=-3)


def pixel_threshold(maps: NDArray[np.floating], false_positive_rate: float) -> float:
    """The threshold that at most `false_positive_rate` of these (normal) maps (N, H, W) exceed
    anywhere: `threshold_at_fpr` of each map's largest value."""
    maps = np.asarray(maps, np.float64)
    return threshold_at_fpr(maps.reshape(len(maps), -1).max(axis=1), false_positive_rate)


def anomaly_masks(maps: NDArray[np.floating], threshold: float, is_anomaly: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """(N, H, W) True where the map is above `threshold` in an image judged anomalous (N,);
    all False for an image judged normal."""
    return (np.asarray(maps) > threshold) & np.asarray(is_anomaly, bool)[:, None, None]


def _levels(pixel_map: NDArray[np.floating], threshold: float) -> F64:
    """The map in units of the threshold, clipped to [0, 2]: 1 at the threshold, 0 at or below 0 nats."""
    return np.clip(np.asarray(pixel_map, np.float64) / threshold, 0.0, 2.0)


def _png(pixels: NDArray[np.uint8] | Image.Image) -> bytes:
    buffer = io.BytesIO()
    (pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)).save(buffer, format="PNG")
    return buffer.getvalue()


def heatmap_png(pixel_map: NDArray[np.floating], threshold: float) -> bytes:
    """A map (H, W) as an RGB PNG on a fixed scale: dark at 0 nats (and below), the middle of
    the colour scale at `threshold`, bright at twice it and above; so maps of different images
    compare, and a normal image's map stays dark."""
    return _png(COLORMAP[np.round(_levels(pixel_map, threshold) / 2.0 * 255.0).astype(np.intp)])


def mask_png(mask: NDArray[np.bool_]) -> bytes:
    """A mask (H, W) as a 1-bit PNG: white (1) where True. Pillow reads it back as mode "1"."""
    return _png(Image.fromarray(np.asarray(mask, bool)))


def overlay(image: NDArray[np.floating], pixel_map: NDArray[np.floating], threshold: float) -> NDArray[np.uint8]:
    """The input (C, H, W) in [0, 1] with its map (H, W) on top: RGB uint8 (H, W, 3).

    The colour (dark to bright over 0 to twice the threshold) is laid over the input with an
    opacity that grows from 0 at a map value of 0 to OVERLAY_OPACITY at the threshold and
    above, so a quiet map leaves the input as it was and every pixel over the threshold stands out.
    """
    base = to_uint8(np.asarray(image, np.float64)).astype(np.float64)  # (H, W, C)
    if base.shape[-1] == 1:
        base = np.repeat(base, 3, axis=-1)
    level = _levels(pixel_map, threshold)  # (H, W), 1 at the threshold
    colour = COLORMAP[np.round(level / 2.0 * 255.0).astype(np.intp)].astype(np.float64)  # (H, W, 3)
    alpha = OVERLAY_OPACITY * np.minimum(level, 1.0)[..., None]
    return np.round((1.0 - alpha) * base + alpha * colour).astype(np.uint8)


def overlay_png(image: NDArray[np.floating], pixel_map: NDArray[np.floating], threshold: float) -> bytes:
    """`overlay` as PNG bytes."""
    return _png(overlay(image, pixel_map, threshold))

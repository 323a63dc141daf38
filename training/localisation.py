"""Localisation metrics: how well per-pixel anomaly maps find defects whose masks are known.

    pixel_auroc(maps, masks)           # every pixel of every image, defect pixels positive
    aupro(maps, masks, fpr_limit=0.3)  # Bergmann et al. (2021), the metric anomalib reports

maps are float (N, H, W), higher more anomalous; masks are bool (N, H, W), the ground truth
(images without a defect have an empty mask and add only normal pixels).

AUPRO (Bergmann, Batzner, Fauser, Sattlegger, Steger: "The MVTec Anomaly Detection
Dataset", IJCV 2021, section 5.2): every connected region of the ground truth (8-connected,
as in the MVTec AD evaluation code) counts alike, whatever its size. At a threshold t, the
per-region overlap PRO(t) is the mean over regions of the fraction of the region's pixels
whose map value is at least t, and FPR(t) the fraction of normal pixels (of all images)
whose value is at least t. AUPRO is the area under PRO as a function of FPR from 0 to
`fpr_limit` (0.3, as in the paper), by the trapezoidal rule with the curve interpolated
linearly at the limit, divided by `fpr_limit` so that a perfect map scores 1.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from sklearn.metrics import roc_auc_score

F64 = NDArray[np.float64]
EIGHT_CONNECTED = np.ones((3, 3), dtype=int)


def pixel_auroc(maps: NDArray[np.floating], masks: NDArray[np.bool_]) -> float:
    """AUROC of the map's values as a classifier of defect pixels, over every pixel of every image."""
    return float(roc_auc_score(np.asarray(masks).reshape(-1), np.asarray(maps, np.float64).reshape(-1)))


def pro_curve(maps: NDArray[np.floating], masks: NDArray[np.bool_]) -> tuple[F64, F64]:
    """The exact PRO curve: (FPR, PRO) at every distinct map value taken as a threshold
    (pixels >= it flagged), from the highest down, preceded by (0, 0)."""
    maps, masks = np.asarray(maps, np.float64), np.asarray(masks, bool)
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ValueError(f"maps {list(maps.shape)} and masks {list(masks.shape)} must both be (N, H, W)")
    labels = np.zeros(masks.shape, np.int64)
    regions = 0
    for i, mask in enumerate(masks):
        found, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
        labels[i] = np.where(found > 0, found + regions, 0)
        regions += count
    normal = ~masks
    if regions == 0 or not normal.any():
        raise ValueError("AUPRO needs at least one defect region and one normal pixel")
    sizes = np.bincount(labels.reshape(-1), minlength=regions + 1)  # sizes[0]: normal pixels, unused
    # Each defect pixel adds 1 / (its region's size * the number of regions) to PRO when it is
    # flagged; each normal pixel adds 1 / (normal pixels) to FPR (counted, then divided: exact).
    flat_labels = labels.reshape(-1)
    pro_step = np.where(flat_labels > 0, 1.0 / (sizes[flat_labels] * regions), 0.0)
    order = np.argsort(-maps.reshape(-1), kind="stable")
    values = maps.reshape(-1)[order]
    fpr, pro = np.cumsum(normal.reshape(-1)[order]) / normal.sum(), np.cumsum(pro_step[order])
    last_of_tie = np.r_[values[1:] != values[:-1], True]  # a threshold flags all pixels of equal value at once
    return np.r_[0.0, fpr[last_of_tie]], np.r_[0.0, pro[last_of_tie]]


def aupro(maps: NDArray[np.floating], masks: NDArray[np.bool_], fpr_limit: float = 0.3) -> float:
    """The normalised area under the PRO curve up to FPR `fpr_limit` (module docstring)."""
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    fpr, pro = pro_curve(maps, masks)
    inside = fpr <= fpr_limit
    x, y = fpr[inside], pro[inside]
    if x[-1] < fpr_limit:  # close the curve at the limit, on the segment that crosses it
        after = int(np.argmax(fpr > fpr_limit))
        x0, x1, y0, y1 = fpr[after - 1], fpr[after], pro[after - 1], pro[after]
        x, y = np.r_[x, fpr_limit], np.r_[y, y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0) / fpr_limit)

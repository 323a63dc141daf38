"""The anomaly decision for the service: K from the request or the calibration, within the
limit, then model/decision.py's threshold, p-values and `is_anomaly`. /v1/score and the v2
scorer both decide here, so the two protocols can never disagree.
"""

from __future__ import annotations

from app.deps import check_range
from model.bundle import Manifest
from model.decision import Decision, decide, default_importance_samples

__all__ = ["Decision", "decide", "importance_samples"]


def importance_samples(manifest: Manifest, requested: int | None, limit: int) -> int:
    """K as asked, else the calibration's K, so scores compare with the calibrated threshold."""
    k = requested if requested is not None else default_importance_samples(manifest.calibration)
    check_range("importance_samples", k, 1, limit)
    return k

"""What one loaded model has seen: score histograms, decisions, the anomaly rate, input
intensity, and a window of posterior means tested for drift. The operations layer reports
to it after each call; Prometheus and GET /v1/models/{name}/monitoring read its snapshots.

    monitor = ModelMonitor(manifest, MonitorConfig(anomaly_rate_window=500, drift_window=500))
    monitor.observe_encode(images, mean)            # (N, C, H, W), (N, D): on the request path, microseconds
    monitor.observe_score(images, scores, decision)  # every calibrated score, p-values, the decision
    monitor.update_drift()                          # off the request path (app/monitoring/schedule.py)
    monitor.snapshot()                              # every number, taken together

The anomaly rate always uses the bundle's calibrated score and threshold, whatever score or
false-positive rate a request asked for, so it compares with `calibration.false_positive_rate`
(the alert VaeserveAnomalyRateHigh). docs/monitoring.md is the metric spec.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from model.buckets import INTENSITY_BUCKETS, P_VALUE_BUCKETS, score_buckets
from model.bundle import Manifest
from model.decision import Decision, p_values, threshold_at_fpr
from model.drift import DriftReport, LatentWindow, drift_report
from model.runtime import ScoreBatch


@dataclass(frozen=True)
class MonitorConfig:
    anomaly_rate_window: int  # scored images
    drift_window: int  # posterior means; 0 keeps none (drift off)


@dataclass(frozen=True)
class HistogramSnapshot:
    """Prometheus's view of a histogram: cumulative counts of observations <= each edge."""

    edges: tuple[float, ...]  # upper bounds, increasing, without +Inf
    cumulative: tuple[int, ...]  # len(edges) + 1: observations <= each edge, then all of them (+Inf)
    sum: float

    @property
    def count(self) -> int:
        return self.cumulative[-1]


class Histogram:
    """Counts per bucket of values, added a batch at a time (one numpy call, not one per value).

    Bucket i holds edges[i-1] < v <= edges[i] (Prometheus's `le`); the last holds v > edges[-1].
    """

    def __init__(self, edges: ArrayLike) -> None:
        self.edges = np.asarray(edges, dtype=np.float64)  # (B,)
        self._counts = np.zeros(len(self.edges) + 1, dtype=np.int64)  # (B + 1,)
        self._sum = 0.0

    def observe(self, values: NDArray[np.floating]) -> None:
        self._counts += np.bincount(np.searchsorted(self.edges, values, side="left"), minlength=len(self._counts))
        self._sum += float(np.sum(values))

    def snapshot(self) -> HistogramSnapshot:
        cumulative = np.cumsum(self._counts)
        return HistogramSnapshot(tuple(self.edges.tolist()), tuple(cumulative.tolist()), self._sum)


@dataclass(frozen=True)
class WindowSpan:
    """How much a sliding window holds, and when its oldest and newest entries arrived."""

    size: int  # entries in the window now
    capacity: int  # the most it holds
    first: float | None  # seconds since the epoch; None while empty
    last: float | None


class _Arrivals:
    """Arrival times of the entries of a sliding window of `capacity` (one per image or latent)."""

    def __init__(self, capacity: int) -> None:
        self._times: deque[float] = deque(maxlen=capacity)

    def add(self, count: int, now: float) -> None:
        self._times.extend([now] * min(count, self._times.maxlen or 0))

    def span(self) -> WindowSpan:
        times = self._times
        return WindowSpan(len(times), times.maxlen or 0, times[0] if times else None, times[-1] if times else None)


@dataclass(frozen=True)
class AnomalyRate:
    score: str  # the calibrated score
    threshold: float  # its calibrated threshold
    false_positive_rate: float  # the rate it was calibrated at
    anomalies: int  # images in the window above the threshold
    window: WindowSpan  # of images

    @property
    def rate(self) -> float | None:
        return self.anomalies / self.window.size if self.window.size else None


@dataclass(frozen=True)
class Drift:
    report: DriftReport
    computed_at: float  # seconds since the epoch
    window: WindowSpan  # the latents it tested


@dataclass(frozen=True)
class MonitorSnapshot:
    model: str
    version: str
    started: float  # seconds since the epoch: counts are since then
    images_encoded: int  # images whose posterior means went through encode
    images_scored: int
    scores: dict[str, HistogramSnapshot]  # per calibrated score
    thresholds: dict[str, float]  # per calibrated score, at the calibrated false-positive rate
    p_values: HistogramSnapshot | None  # of the calibrated score
    decisions: dict[tuple[str, str], int]  # (score, "anomaly" | "normal") -> images
    anomaly_rate: AnomalyRate | None  # None without a calibration
    input_mean_intensity: HistogramSnapshot
    latents: WindowSpan | None  # the drift window now; None when drift is off or the bundle has no latents
    drift: Drift | None  # the last report; None before the first


class ModelMonitor:
    """Monitoring state of one model version. Reports come from the event loop (the operations
    layer) and drift from one background thread; a lock keeps each snapshot consistent."""

    def __init__(self, manifest: Manifest, config: MonitorConfig) -> None:
        self.manifest = manifest
        self.started = time.time()
        cal = manifest.calibration
        self._calibration = cal
        self._scores = {name: Histogram(score_buckets(cal, name)) for name in cal.scores} if cal else {}
        self._thresholds = {
            name: cal.threshold if name == cal.score else threshold_at_fpr(values, cal.false_positive_rate)
            for name, values in cal.scores.items()
        } if cal else {}  # fmt: skip
        self._p_values = Histogram(P_VALUE_BUCKETS) if cal else None
        self._intensity = Histogram(INTENSITY_BUCKETS)
        self._decisions: dict[tuple[str, str], int] = {}
        self._capacity = config.anomaly_rate_window
        self._flags: deque[bool] = deque(maxlen=self._capacity)  # calibrated score > threshold, oldest first
        self._anomalies = 0  # True entries of _flags
        self._flag_times = _Arrivals(config.anomaly_rate_window)
        self._encoded = self._scored = 0
        stats = manifest.latents
        keep_latents = config.drift_window > 0 and stats is not None
        self._latents = LatentWindow(config.drift_window, manifest.latent_dim) if keep_latents else None
        self._latent_times = _Arrivals(config.drift_window)
        self._drift: Drift | None = None
        self._drift_seen = 0  # latents seen when the last report was taken
        self._lock = threading.Lock()

    @property
    def keeps_latents(self) -> bool:
        return self._latents is not None

    def observe_encode(self, images: NDArray[np.float32], mean: NDArray[np.float32]) -> None:
        """Images (N, C, H, W) in [0, 1] went through the encoder, giving posterior means (N, D)."""
        now = time.time()
        with self._lock:
            self._encoded += len(images)
            self._observe_inputs(images, mean, now)

    def observe_score(self, images: NDArray[np.float32], scores: ScoreBatch, decision: Decision) -> None:
        """Images (N, C, H, W) were scored (their posterior means in `scores.mean`) and decided by `decision`."""
        now = time.time()
        cal = self._calibration
        with self._lock:
            self._scored += len(images)
            self._observe_inputs(images, scores.mean, now)
            for name, histogram in self._scores.items():
                histogram.observe(scores[name])
            if decision.is_anomaly is not None:
                anomalies = int(np.count_nonzero(decision.is_anomaly))
                self._count(decision.score, "anomaly", anomalies)
                self._count(decision.score, "normal", len(images) - anomalies)
            if cal is None or self._p_values is None:
                return
            values = scores[cal.score]  # (N,)
            calibrated = decision.p_values if decision.score == cal.score else None  # p-values ignore the rate
            self._p_values.observe(calibrated if calibrated is not None else p_values(cal.scores[cal.score], values))
            for flag in (values > cal.threshold)[-self._capacity :].tolist():
                if len(self._flags) == self._capacity:
                    self._anomalies -= self._flags[0]
                self._flags.append(flag)
                self._anomalies += flag
            self._flag_times.add(len(values), now)

    def _observe_inputs(self, images: NDArray[np.float32], mean: NDArray[np.float32], now: float) -> None:
        self._intensity.observe(images.reshape(len(images), -1).mean(axis=1))
        if self._latents is not None:
            self._latents.add(mean)
            self._latent_times.add(len(mean), now)

    def _count(self, score: str, decision: str, images: int) -> None:
        key = (score, decision)
        self._decisions[key] = self._decisions.get(key, 0) + images

    def update_drift(self) -> Drift | None:
        """Test the latent window against the bundle's training latents (model/drift.py), unless it
        has not changed since the last report or holds fewer than 2 latents. The last report.

        Costs tens to hundreds of milliseconds for 500 latents: call it off the request path.
        """
        stats = self.manifest.latents
        if self._latents is None or stats is None:
            return None
        with self._lock:
            seen = self._latents.seen
            window = self._latents.values()  # (n, D), a copy
            span = self._latent_times.span()
        if seen != self._drift_seen and len(window) >= 2:
            report = drift_report(stats, window)
            drift = Drift(report, time.time(), span)
            with self._lock:
                self._drift, self._drift_seen = drift, seen
        return self._drift

    def snapshot(self) -> MonitorSnapshot:
        cal = self._calibration
        with self._lock:
            rate = None
            if cal is not None:
                span = self._flag_times.span()
                rate = AnomalyRate(cal.score, cal.threshold, cal.false_positive_rate, self._anomalies, span)
            return MonitorSnapshot(
                model=self.manifest.name,
                version=self.manifest.version,
                started=self.started,
                images_encoded=self._encoded,
                images_scored=self._scored,
                scores={name: h.snapshot() for name, h in self._scores.items()},
                thresholds=dict(self._thresholds),
                p_values=self._p_values.snapshot() if self._p_values is not None else None,
                decisions=dict(self._decisions),
                anomaly_rate=rate,
                input_mean_intensity=self._intensity.snapshot(),
                latents=self._latent_times.span() if self._latents is not None else None,
                drift=self._drift,
            )

"""What one loaded model has seen: score histograms, decisions, the anomaly rate, input
intensity, and a window of posterior means tested for drift. The operations layer reports
to it after each call; Prometheus and GET /v1/models/{name}/monitoring read its snapshots.

    monitor = ModelMonitor(manifest, MonitorConfig(anomaly_rate_window=500, drift_window=500))
    monitor.observe_encode(images, mean)            # (N, C, H, W), (N, D): on the request path, a few microseconds
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

    @classmethod
    def of(cls, times: NDArray[np.float64], capacity: int) -> WindowSpan:
        """The span of a window whose entries arrived at `times` (n,), oldest first."""
        return cls(len(times), capacity, float(times[0]) if len(times) else None,
                   float(times[-1]) if len(times) else None)  # fmt: skip


@dataclass(frozen=True)
class _Seen:
    """One operation's report, kept as it came until the monitor folds it into its counts."""

    time: float  # seconds since the epoch
    images: int
    intensity: NDArray[np.float64]  # (N,) mean pixel value per image
    mean: NDArray[np.float32] | None  # (N, D) posterior means, when the monitor keeps latents
    scores: dict[str, NDArray[np.float64]] | None  # calibrated score -> (N,); None for encode
    decision: tuple[str, int] | None  # (the score that decided, images decided anomalous); None without one


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
    """Monitoring state of one model version.

    A report on the request path only computes the images' intensities and keeps references to
    the arrays it was given; every FOLD_EVERY reports, and before each snapshot or drift
    report, the kept reports are folded into the histograms, counters and windows with one
    numpy call per quantity, whatever their number. Reports come from the event loop (the
    operations layer), drift from one background thread; a lock keeps each snapshot consistent.
    """

    FOLD_EVERY = 64  # reports kept before they are folded: bounds the memory they hold

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
        # model.drift.LatentWindow is a ring of the last N rows: here (is anomaly, arrival time) per image
        self._flags = LatentWindow(config.anomaly_rate_window, 2)
        self._encoded = self._scored = 0
        keep_latents = config.drift_window > 0 and manifest.latents is not None
        self._latents = LatentWindow(config.drift_window, manifest.latent_dim) if keep_latents else None
        self._latent_times = LatentWindow(config.drift_window, 1) if keep_latents else None  # arrival per latent
        self._drift: Drift | None = None
        self._drift_seen = 0  # latents seen when the last report was taken
        self._pending: list[_Seen] = []
        self._lock = threading.Lock()

    def observe_encode(self, images: NDArray[np.float32], mean: NDArray[np.float32]) -> None:
        """Images (N, C, H, W) in [0, 1] went through the encoder, giving posterior means (N, D)."""
        self._keep(
            _Seen(time.time(), len(images), _intensity(images), mean if self._latents is not None else None, None, None)
        )

    def observe_score(self, images: NDArray[np.float32], scores: ScoreBatch, decision: Decision) -> None:
        """Images (N, C, H, W) were scored (their posterior means in `scores.mean`) and decided by `decision`."""
        flags = decision.is_anomaly
        decided = None if flags is None else (decision.score, int(np.count_nonzero(flags)))
        calibrated = {name: scores[name] for name in self._scores}
        mean = scores.mean if self._latents is not None else None
        self._keep(_Seen(time.time(), len(images), _intensity(images), mean, calibrated, decided))

    def _keep(self, seen: _Seen) -> None:
        with self._lock:
            self._pending.append(seen)
            if len(self._pending) >= self.FOLD_EVERY:
                self._fold()

    def _fold(self) -> None:
        """Fold the kept reports into the counts (under the lock)."""
        seen, self._pending = self._pending, []
        if not seen:
            return
        self._intensity.observe(np.concatenate([s.intensity for s in seen]))
        with_latents = [s.mean for s in seen if s.mean is not None]
        if self._latents is not None and self._latent_times is not None and with_latents:
            self._latents.add(np.concatenate(with_latents))
            self._latent_times.add(_arrivals([s for s in seen if s.mean is not None])[:, None])
        scored = [s for s in seen if s.scores is not None]
        self._encoded += sum(s.images for s in seen if s.scores is None)
        self._scored += sum(s.images for s in scored)
        for s in scored:
            if s.decision is not None:
                name, anomalies = s.decision
                self._count(name, "anomaly", anomalies)
                self._count(name, "normal", s.images - anomalies)
        cal = self._calibration
        if not scored or cal is None or self._p_values is None:
            return
        for name, histogram in self._scores.items():
            histogram.observe(np.concatenate([s.scores[name] for s in scored]))  # type: ignore[index]
        values = np.concatenate([s.scores[cal.score] for s in scored])  # type: ignore[index]
        self._p_values.observe(p_values(cal.scores[cal.score], values))  # p-values do not depend on the rate
        self._flags.add(np.stack([values > cal.threshold, _arrivals(scored)], axis=1))

    def _count(self, score: str, decision: str, images: int) -> None:
        key = (score, decision)
        self._decisions[key] = self._decisions.get(key, 0) + images

    def update_drift(self) -> Drift | None:
        """Test the latent window against the bundle's training latents (model/drift.py), unless it
        has not changed since the last report or holds fewer than 2 latents. The last report.

        Costs tens to hundreds of milliseconds for 500 latents: call it off the request path.
        """
        stats = self.manifest.latents
        if self._latents is None or self._latent_times is None or stats is None:
            return None
        with self._lock:
            self._fold()
            seen = self._latents.seen
            window = self._latents.values()  # (n, D), a copy
            span = WindowSpan.of(self._latent_times.values()[:, 0], self._latents.capacity)
        if seen != self._drift_seen and len(window) >= 2:
            report = drift_report(stats, window)
            drift = Drift(report, time.time(), span)
            with self._lock:
                self._drift, self._drift_seen = drift, seen
        return self._drift

    def snapshot(self) -> MonitorSnapshot:
        cal = self._calibration
        with self._lock:
            self._fold()
            rate = None
            if cal is not None:
                flags = self._flags.values()  # (n, 2): is anomaly, arrival time
                span = WindowSpan.of(flags[:, 1], self._flags.capacity)
                anomalies = int(flags[:, 0].sum())
                rate = AnomalyRate(cal.score, cal.threshold, cal.false_positive_rate, anomalies, span)
            latents = None
            if self._latents is not None and self._latent_times is not None:
                latents = WindowSpan.of(self._latent_times.values()[:, 0], self._latents.capacity)
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
                latents=latents,
                drift=self._drift,
            )


def _intensity(images: NDArray[np.float32]) -> NDArray[np.float64]:
    """Mean pixel value per image of (N, C, H, W) -> (N,)."""
    return images.reshape(len(images), -1).mean(axis=1, dtype=np.float64)


def _arrivals(seen: list[_Seen]) -> NDArray[np.float64]:
    """Arrival time per image of the reports `seen`, (sum of their images,)."""
    return np.repeat([s.time for s in seen], [s.images for s in seen]).astype(np.float64)

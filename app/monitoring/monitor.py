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


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs microseconds on the request path
class _Seen:
    """One operation's report, kept as it came until the monitor folds it into its counts."""

    time: float  # seconds since the epoch
    images: int
    pixel_sums: NDArray[np.float64]  # (N,) sum of each image's pixel values
    mean: NDArray[np.float32] | None  # (N, D) posterior means, when the monitor keeps latents
    scores: dict[str, NDArray[np.float64]] | None  # every score (ScoreBatch.scores); None for encode
    decision: Decision | None  # what the request was answered with; None for encode


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

    A report on the request path sums the images' pixels and keeps references to the arrays it
    was given (a few microseconds); once FOLD_IMAGES images are kept, and before each snapshot
    (a scrape) or drift report, the kept reports are folded into the histograms, counters and
    windows with a few numpy calls per quantity, whatever their number. Reports come from the event loop (the
    operations layer), drift from one background thread; a lock keeps each snapshot consistent.
    """

    FOLD_IMAGES = 4096  # images kept before their reports are folded: bounds the memory they hold

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
        self._pending_images = 0
        self._lock = threading.Lock()

    def observe_encode(self, images: NDArray[np.float32], mean: NDArray[np.float32]) -> None:
        """Images (N, C, H, W) in [0, 1] went through the encoder, giving posterior means (N, D)."""
        kept = mean if self._latents is not None else None
        self._keep(_Seen(time.time(), len(images), _pixel_sums(images), kept, None, None))

    def observe_score(self, images: NDArray[np.float32], scores: ScoreBatch, decision: Decision) -> None:
        """Images (N, C, H, W) were scored (their posterior means in `scores.mean`) and decided by `decision`."""
        mean = scores.mean if self._latents is not None else None
        self._keep(_Seen(time.time(), len(images), _pixel_sums(images), mean, scores.scores, decision))

    def _keep(self, seen: _Seen) -> None:
        with self._lock:
            self._pending.append(seen)
            self._pending_images += seen.images
            if self._pending_images >= self.FOLD_IMAGES:
                self._fold()

    def _fold(self) -> None:
        """Fold the kept reports into the counts (under the lock): a few numpy calls per quantity, for all of them."""
        seen, self._pending, self._pending_images = self._pending, [], 0
        if not seen:
            return
        self._intensity.observe(np.concatenate([s.pixel_sums for s in seen]) / self.manifest.input.dims)
        with_latents = [s for s in seen if s.mean is not None]
        if self._latents is not None and self._latent_times is not None and with_latents:
            self._latents.add(np.concatenate([s.mean for s in with_latents]))
            self._latent_times.add(_arrivals(with_latents)[:, None])
        scored = [s for s in seen if s.scores is not None]
        self._encoded += sum(s.images for s in seen) - sum(s.images for s in scored)
        self._scored += sum(s.images for s in scored)
        self._count_decisions([s.decision for s in scored if s.decision is not None])
        cal = self._calibration
        if not scored or cal is None or self._p_values is None:
            return
        for name, histogram in self._scores.items():
            histogram.observe(np.concatenate([s.scores[name] for s in scored]))  # type: ignore[index]
        values = np.concatenate([s.scores[cal.score] for s in scored])  # type: ignore[index]
        self._p_values.observe(p_values(cal.scores[cal.score], values))  # p-values do not depend on the rate
        self._flags.add(np.stack([values > cal.threshold, _arrivals(scored)], axis=1))

    def _count_decisions(self, decisions: list[Decision]) -> None:
        """Anomalies and normals per deciding score: one comparison over all images a score decided."""
        for score in {d.score for d in decisions}:
            mine = [d for d in decisions if d.score == score and d.threshold is not None]
            if not mine:
                continue
            values = np.concatenate([d.values for d in mine])
            thresholds = np.repeat([d.threshold for d in mine], [len(d.values) for d in mine])
            anomalies = int(np.count_nonzero(values > thresholds))  # model/decision.py: score > threshold
            for decision, images in (("anomaly", anomalies), ("normal", len(values) - anomalies)):
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


def _pixel_sums(images: NDArray[np.float32]) -> NDArray[np.float64]:
    """The sum of each image's pixel values, (N, C, H, W) -> (N,): one ufunc call (ndarray.mean costs more)."""
    return np.add.reduce(images.reshape(len(images), -1), axis=1, dtype=np.float64)


def _arrivals(seen: list[_Seen]) -> NDArray[np.float64]:
    """Arrival time per image of the reports `seen`, (sum of their images,)."""
    return np.repeat([s.time for s in seen], [s.images for s in seen]).astype(np.float64)

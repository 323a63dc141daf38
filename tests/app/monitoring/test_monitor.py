"""A model's monitor on the shipped model's real scores and latents, against direct counts and
model/drift.py; the drift schedule's thread."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from app.monitoring.monitor import ModelMonitor, MonitorConfig
from app.monitoring.schedule import DriftSchedule
from app.settings import SHIPPED_REPOSITORY
from model.buckets import INTENSITY_BUCKETS, P_VALUE_BUCKETS, score_buckets
from model.bundle import list_repository, load_bundle
from model.decision import decide, p_values, threshold_at_fpr
from model.drift import drift_report
from model.runtime import RuntimeOptions, ScoreBatch, VAERuntime
from model.scores import CALIBRATED_SCORES
from tests.helpers import rotated

K = 4  # importance samples: the monitor records whatever K the requests ask for


@pytest.fixture(scope="module")
def runtime() -> VAERuntime:
    return VAERuntime(load_bundle(list_repository(SHIPPED_REPOSITORY)[("mnist-vae", "1")]),
                      RuntimeOptions(intra_op_threads=1))  # fmt: skip


@pytest.fixture(scope="module")
def scored(runtime: VAERuntime, digit_images: np.ndarray) -> ScoreBatch:
    return runtime.score(digit_images, K, seed=0)


def _cumulative(values: np.ndarray, edges: tuple[float, ...]) -> tuple[int, ...]:
    return (*(int(np.count_nonzero(values <= edge)) for edge in edges), len(values))


def test_scores_p_values_decisions_and_intensity_are_counted_as_prometheus_would(runtime, scored, digit_images) -> None:
    cal = runtime.manifest.calibration
    assert cal is not None
    monitor = ModelMonitor(runtime.manifest, MonitorConfig(anomaly_rate_window=500, drift_window=500))
    decision = decide(cal, scored.scores)
    monitor.observe_score(digit_images[:40], ScoreBatch.from_arrays({k: v[:40] for k, v in scored.arrays().items()}, K),
                          decide(cal, {k: v[:40] for k, v in scored.scores.items()}))  # fmt: skip
    monitor.observe_score(digit_images[40:], ScoreBatch.from_arrays({k: v[40:] for k, v in scored.arrays().items()}, K),
                          decide(cal, {k: v[40:] for k, v in scored.scores.items()}))  # fmt: skip
    snap = monitor.snapshot()
    assert (snap.model, snap.version, snap.images_scored, snap.images_encoded) == ("mnist-vae", "1", 64, 0)
    assert set(snap.scores) == set(cal.scores) == set(CALIBRATED_SCORES)
    for name, histogram in snap.scores.items():
        assert histogram.edges == score_buckets(cal, name)
        assert histogram.cumulative == _cumulative(scored[name], histogram.edges)
        assert histogram.sum == pytest.approx(float(scored[name].sum()), rel=1e-12)
    assert snap.thresholds[cal.score] == cal.threshold
    assert snap.thresholds["neg_elbo"] == threshold_at_fpr(cal.scores["neg_elbo"], cal.false_positive_rate)
    assert snap.p_values is not None and snap.p_values.edges == P_VALUE_BUCKETS
    assert snap.p_values.cumulative == _cumulative(p_values(cal.scores[cal.score], scored[cal.score]), P_VALUE_BUCKETS)
    anomalies = int(np.count_nonzero(decision.is_anomaly))
    assert snap.decisions == {(cal.score, "anomaly"): anomalies, (cal.score, "normal"): 64 - anomalies}
    intensity = digit_images.reshape(64, -1).mean(axis=1)
    assert snap.input_mean_intensity.edges == INTENSITY_BUCKETS
    assert snap.input_mean_intensity.cumulative == _cumulative(intensity, INTENSITY_BUCKETS)
    assert 0.05 < intensity.mean() < 0.25  # MNIST: mostly black, about 13 % ink


def test_reports_one_at_a_time_fold_into_the_counts_of_one_batch(runtime, scored, digit_images) -> None:
    """64 one-image reports and 70 encodes, folded on the request path every 16 images, count as one batch of each."""
    cal = runtime.manifest.calibration
    config = MonitorConfig(anomaly_rate_window=50, drift_window=60)
    alone, together = ModelMonitor(runtime.manifest, config), ModelMonitor(runtime.manifest, config)
    alone.FOLD_IMAGES = 16  # type: ignore[misc]
    for i in range(64):
        part = ScoreBatch.from_arrays({k: v[i : i + 1] for k, v in scored.arrays().items()}, K)
        alone.observe_score(digit_images[i : i + 1], part, decide(cal, part.scores))
    together.observe_score(digit_images, scored, decide(cal, scored.scores))
    means = np.concatenate([scored.mean, scored.mean[:6]])
    for i in range(70):
        alone.observe_encode(digit_images[i % 64 : i % 64 + 1], means[i : i + 1])
    together.observe_encode(np.concatenate([digit_images, digit_images[:6]]), means)
    a, b = alone.snapshot(), together.snapshot()
    assert (a.images_scored, a.images_encoded) == (b.images_scored, b.images_encoded) == (64, 70)
    for name in b.scores:  # the sums add in another order: equal to rounding
        assert a.scores[name].cumulative == b.scores[name].cumulative
        assert a.scores[name].sum == pytest.approx(b.scores[name].sum, rel=1e-12)
    assert a.p_values.cumulative == b.p_values.cumulative and a.decisions == b.decisions
    assert a.input_mean_intensity.cumulative == b.input_mean_intensity.cumulative
    assert a.anomaly_rate.anomalies == b.anomaly_rate.anomalies and a.anomaly_rate.window.size == 50
    assert a.latents.size == b.latents.size == 60
    assert alone.update_drift().report == together.update_drift().report


def test_anomaly_rate_is_the_calibrated_score_over_the_last_n_images(runtime, scored, digit_images) -> None:
    """Whatever score and rate the request decides with, the rate compares the calibrated score with its threshold."""
    cal = runtime.manifest.calibration
    assert cal is not None
    monitor = ModelMonitor(runtime.manifest, MonitorConfig(anomaly_rate_window=10, drift_window=0))
    assert monitor.snapshot().anomaly_rate.rate is None  # nothing scored yet
    turned = rotated(digit_images[:20])
    turned_scores = runtime.score(turned, K, seed=0)
    for images, scores in ((digit_images, scored), (turned, turned_scores)):
        monitor.observe_score(images, scores, decide(cal, scores.scores, "neg_elbo", 0.5))
        flags = scores[cal.score][-10:] > cal.threshold  # the last 10 images
        rate = monitor.snapshot().anomaly_rate
        assert rate is not None and (rate.score, rate.threshold) == (cal.score, cal.threshold)
        assert rate.false_positive_rate == 0.01  # the calibration's, not the request's 0.5
        assert (rate.anomalies, rate.window.size, rate.window.capacity) == (int(flags.sum()), 10, 10)
        assert rate.rate == flags.mean()
        assert rate.window.first is not None and rate.window.last is not None and rate.window.first <= rate.window.last
    assert monitor.snapshot().anomaly_rate.rate >= 0.5  # rotated digits reconstruct badly
    decided = decide(cal, scored.scores, "neg_elbo", 0.5).is_anomaly
    assert decided is not None and monitor.snapshot().decisions[("neg_elbo", "anomaly")] >= int(decided.sum())
    p = p_values(cal.scores[cal.score], np.concatenate([scored[cal.score], turned_scores[cal.score]]))
    assert monitor.snapshot().p_values.cumulative == _cumulative(p, P_VALUE_BUCKETS)  # the calibrated score's


def test_drift_report_is_model_drift_on_the_window_of_posterior_means(runtime, scored, digit_images) -> None:
    manifest = runtime.manifest
    assert manifest.latents is not None
    monitor = ModelMonitor(manifest, MonitorConfig(anomaly_rate_window=500, drift_window=50))
    assert monitor.update_drift() is None  # an empty window is not tested
    mean, _ = runtime.encode(digit_images[:30])
    monitor.observe_encode(digit_images[:30], mean)
    cal = manifest.calibration
    monitor.observe_score(digit_images[30:], ScoreBatch.from_arrays({k: v[30:] for k, v in scored.arrays().items()}, K),
                          decide(cal, {k: v[30:] for k, v in scored.scores.items()}))  # fmt: skip
    window = np.concatenate([mean, scored.mean[30:]])[-50:]  # encode's and score's posterior means, the last 50
    assert np.array_equal(scored.mean, runtime.encode(digit_images)[0])
    drift = monitor.update_drift()
    assert drift is not None and drift.report == drift_report(manifest.latents, window)
    assert (drift.window.size, drift.window.capacity, drift.report.window) == (50, 50, 50)
    assert monitor.update_drift() is drift  # nothing new: not computed again
    snap = monitor.snapshot()
    assert snap.drift is drift and snap.latents is not None and snap.latents.size == 50
    assert (snap.images_encoded, snap.images_scored) == (30, 34)
    off = ModelMonitor(manifest, MonitorConfig(anomaly_rate_window=500, drift_window=0))
    off.observe_encode(digit_images[:30], mean)
    assert off.update_drift() is None and off.snapshot().latents is None


def test_a_bundle_without_calibration_or_latents_gets_what_it_can(runtime, scored, digit_images) -> None:
    manifest = runtime.manifest.model_copy(update={"calibration": None, "latents": None})
    monitor = ModelMonitor(manifest, MonitorConfig(anomaly_rate_window=500, drift_window=500))
    monitor.observe_score(digit_images, scored, decide(None, scored.scores))
    snap = monitor.snapshot()
    assert snap.scores == {} and snap.thresholds == {} and snap.p_values is None and snap.anomaly_rate is None
    assert snap.decisions == {} and snap.latents is None and monitor.update_drift() is None
    assert snap.input_mean_intensity.count == 64


def test_drift_schedule_reports_in_its_thread_and_stops(runtime, digit_images, caplog) -> None:
    monitor = ModelMonitor(runtime.manifest, MonitorConfig(anomaly_rate_window=500, drift_window=100))
    monitor.observe_encode(digit_images, runtime.encode(digit_images)[0])

    class Broken:
        manifest = runtime.manifest

        def update_drift(self) -> None:
            raise RuntimeError("boom")

    schedule = DriftSchedule(lambda: [Broken(), monitor], interval_s=0.05)  # type: ignore[list-item]
    schedule.start()
    try:
        deadline = time.monotonic() + 60
        while monitor.snapshot().drift is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        schedule.stop()
    assert monitor.snapshot().drift is not None  # a failing monitor does not stop the others
    assert "drift report of mnist-vae:1 failed" in caplog.text and caplog.records[0].levelno == logging.ERROR
    assert "drift-reports" not in {t.name for t in threading.enumerate()}
    with pytest.raises(ValueError, match="positive"):
        DriftSchedule(lambda: [], interval_s=0)

"""The model metrics of docs/monitoring.md, read from each serving model's monitor at scrape time.

A collector rather than prometheus_client's Histogram and Gauge objects because each model
version has its own score buckets (from its calibration), which one Histogram cannot hold,
and because reading at scrape time makes a reload show at once: the series of a model that
is gone go with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from app.monitoring.monitor import HistogramSnapshot, ModelMonitor, MonitorSnapshot

MODEL = ["model", "version"]


class MonitoringCollector(Collector):
    """Every model metric of every monitor that `monitors()` returns (none while models load)."""

    def __init__(self, monitors: Callable[[], Iterable[ModelMonitor]]) -> None:
        self._monitors = monitors

    def collect(self) -> Iterator[Metric]:
        snapshots = [monitor.snapshot() for monitor in self._monitors()]
        yield from _model_metrics(snapshots)
        yield from _drift_metrics(snapshots)


def _buckets(h: HistogramSnapshot) -> list[tuple[str, float]]:
    edges = [floatToGoString(edge) for edge in (*h.edges, float("inf"))]  # type: ignore[no-untyped-call]
    return list(zip(edges, h.cumulative, strict=True))


def _model_metrics(snapshots: list[MonitorSnapshot]) -> Iterator[Metric]:
    score = HistogramMetricFamily("vaeserve_score", "every calibrated score of every scored image; buckets from "
                                  "the bundle's calibration", labels=[*MODEL, "score"])  # fmt: skip
    p_value = HistogramMetricFamily("vaeserve_p_value", "conformal p-value of each scored image under the "
                                    "calibrated score", labels=[*MODEL, "score"])  # fmt: skip
    decisions = CounterMetricFamily("vaeserve_decisions", "decisions on scored images, by the score that decided",
                                    labels=[*MODEL, "score", "decision"])  # fmt: skip
    rate = GaugeMetricFamily("vaeserve_anomaly_rate", "fraction of the last N scored images above the calibrated "
                             "threshold of the calibrated score", labels=MODEL)  # fmt: skip
    rate_window = GaugeMetricFamily("vaeserve_anomaly_rate_window", "scored images the anomaly rate covers",
                                    labels=MODEL)  # fmt: skip
    fpr = GaugeMetricFamily("vaeserve_calibration_false_positive_rate", "the false-positive rate the bundle was "
                            "calibrated at", labels=MODEL)  # fmt: skip
    threshold = GaugeMetricFamily("vaeserve_calibration_threshold", "each calibrated score's threshold at the "
                                  "calibrated false-positive rate", labels=[*MODEL, "score"])  # fmt: skip
    intensity = HistogramMetricFamily("vaeserve_input_mean_intensity", "mean pixel value of each input after "
                                      "preprocessing", labels=MODEL)  # fmt: skip
    for s in snapshots:
        model = [s.model, s.version]
        for name, histogram in s.scores.items():
            score.add_metric([*model, name], _buckets(histogram), histogram.sum)
        for (name, decision), count in sorted(s.decisions.items()):
            decisions.add_metric([*model, name, decision], count, created=s.started)
        intensity.add_metric(model, _buckets(s.input_mean_intensity), s.input_mean_intensity.sum)
        for name, value in s.thresholds.items():
            threshold.add_metric([*model, name], value)
        if (r := s.anomaly_rate) is not None:
            if s.p_values is not None:
                p_value.add_metric([*model, r.score], _buckets(s.p_values), s.p_values.sum)
            rate.add_metric(model, r.rate or 0.0)
            rate_window.add_metric(model, r.window.size)
            fpr.add_metric(model, r.false_positive_rate)
    yield from (score, p_value, decisions, rate, rate_window, fpr, threshold, intensity)


def _drift_metrics(snapshots: list[MonitorSnapshot]) -> Iterator[Metric]:
    statistic = GaugeMetricFamily("vaeserve_latent_drift_statistic", "mmd: MMD²_u of recent posterior means against "
                                  "the training latents; ks: the largest per-dimension KS statistic",
                                  labels=[*MODEL, "test"])  # fmt: skip
    p_value = GaugeMetricFamily("vaeserve_latent_drift_p_value", "mmd: the permutation p-value; ks: the smallest "
                                "Holm-adjusted p-value", labels=[*MODEL, "test"])  # fmt: skip
    window = GaugeMetricFamily("vaeserve_latent_drift_window", "posterior means the last drift report tested",
                               labels=MODEL)  # fmt: skip
    flagged = GaugeMetricFamily("vaeserve_latent_drift_dimensions_flagged", "latent dimensions whose Holm-adjusted "
                                "KS p-value is at most the level", labels=MODEL)  # fmt: skip
    mean_shift = GaugeMetricFamily("vaeserve_latent_mean_shift", "(window mean - training mean) / training std, per "
                                   "latent dimension", labels=[*MODEL, "dimension"])  # fmt: skip
    std_shift = GaugeMetricFamily("vaeserve_latent_std_shift", "(window std - training std) / training std, per "
                                  "latent dimension", labels=[*MODEL, "dimension"])  # fmt: skip
    timestamp = GaugeMetricFamily("vaeserve_latent_drift_timestamp_seconds", "when the last drift report was "
                                  "computed", labels=MODEL)  # fmt: skip
    for s in snapshots:
        if s.drift is None:
            continue
        model, report = [s.model, s.version], s.drift.report
        statistic.add_metric([*model, "mmd"], report.mmd.statistic)
        statistic.add_metric([*model, "ks"], max(report.ks.statistics))
        p_value.add_metric([*model, "mmd"], report.mmd.p_value)
        p_value.add_metric([*model, "ks"], report.ks.p_value)
        window.add_metric(model, report.window)
        flagged.add_metric(model, len(report.ks.flagged))
        for d, (mean, std) in enumerate(zip(report.shift.mean, report.shift.std, strict=True)):
            mean_shift.add_metric([*model, str(d)], mean)
            std_shift.add_metric([*model, str(d)], std)
        timestamp.add_metric(model, s.drift.computed_at)
    yield from (statistic, p_value, window, flagged, mean_shift, std_shift, timestamp)

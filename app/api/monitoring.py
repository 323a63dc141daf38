"""GET /v1/models/{name}/monitoring: a model's monitoring numbers as JSON (app/monitoring/)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from app.api.deps import RegistryDep
from app.api.responses import problems
from app.errors import ServiceError
from app.monitoring.monitor import HistogramSnapshot, MonitorSnapshot, WindowSpan
from wire import v1 as s

router = APIRouter(prefix="/v1", tags=["v1"])


@router.get(
    "/models/{name}/monitoring",
    summary="What a model has seen: score histograms, decisions, anomaly rate, input intensity, latent drift",
    response_model=s.MonitoringResponse,
    responses=problems(401, 404, 503),  # 404: an unknown model, or monitoring off
)
async def get_monitoring(name: str, registry: RegistryDep, version: str | None = None) -> s.MonitoringResponse:
    """The numbers /metrics gives for the model (its highest version unless `version` is given), with their windows."""
    model = registry.get(name, version)
    if model.monitor is None:
        raise ServiceError(404, "monitoring-off", "Not found", "monitoring is off on this server (VAESERVE_MONITORING)")
    return monitoring_response(model.monitor.snapshot())


def monitoring_response(snap: MonitorSnapshot) -> s.MonitoringResponse:
    rate, drift = snap.anomaly_rate, snap.drift
    return s.MonitoringResponse(
        model=snap.model,
        version=snap.version,
        since=_time(snap.started),
        images_encoded=snap.images_encoded,
        images_scored=snap.images_scored,
        anomaly_rate=None if rate is None else s.AnomalyRate(
            rate=rate.rate, anomalies=rate.anomalies, score=rate.score, threshold=rate.threshold,
            false_positive_rate=rate.false_positive_rate, window=_window(rate.window),
        ),
        decisions=[s.DecisionCount(score=score, decision=decision, images=n)
                   for (score, decision), n in sorted(snap.decisions.items())],
        scores={name: s.ScoreHistogram(**_histogram(h).model_dump(), threshold=snap.thresholds[name])
                for name, h in snap.scores.items()},
        p_values=None if snap.p_values is None else _histogram(snap.p_values),
        input_mean_intensity=_histogram(snap.input_mean_intensity),
        latents=None if snap.latents is None else _window(snap.latents),
        drift=None if drift is None else s.Drift(
            computed_at=_time(drift.computed_at),
            window=_window(drift.window),
            reference=drift.report.reference,
            mmd=s.MMDTest(statistic=drift.report.mmd.statistic, p_value=drift.report.mmd.p_value,
                          bandwidth=drift.report.mmd.bandwidth, permutations=drift.report.mmd.permutations),
            ks=s.KSTests(statistic=max(drift.report.ks.statistics), p_value=drift.report.ks.p_value,
                         level=drift.report.ks.level, flagged=list(drift.report.ks.flagged),
                         statistics=list(drift.report.ks.statistics),
                         adjusted_p_values=list(drift.report.ks.adjusted)),
            mean_shift=list(drift.report.shift.mean),
            std_shift=list(drift.report.shift.std),
        ),
    )  # fmt: skip


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _window(span: WindowSpan) -> s.Window:
    return s.Window(size=span.size, capacity=span.capacity, first=_time(span.first), last=_time(span.last))


def _histogram(h: HistogramSnapshot) -> s.Histogram:
    return s.Histogram(edges=list(h.edges), cumulative=list(h.cumulative[:-1]), count=h.count, sum=h.sum)

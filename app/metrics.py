"""Prometheus metrics: requests, latency, in-flight, batch sizes, queue depth, loaded models,
refused inputs, and the model metrics of app/monitoring/ (docs/monitoring.md is the spec).

Each app has its own registry (tests build many apps in one process). Queue depth, model
info and the model metrics are read from the serving registry at scrape time, so a reload
shows at once. With several workers each process reports its own numbers: scrape each pod
or process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from app.monitoring.exposition import MonitoringCollector
from app.monitoring.monitor import ModelMonitor

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
REFUSED_STATUSES = frozenset({400, 413, 415, 422})  # bad input, as opposed to 401, 404, 5xx...


class ServiceMetrics:
    def __init__(self, serving: Callable[[], Any]) -> None:
        """`serving` returns the registry of models now serving (or None while loading)."""
        self.registry = CollectorRegistry()
        labels = ["route", "method", "status"]
        self.requests = Counter("vaeserve_requests", "HTTP requests answered", labels, registry=self.registry)
        self.latency = Histogram(
            "vaeserve_request_duration_seconds", "time to answer a request", labels,
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.in_flight = Gauge("vaeserve_requests_in_flight", "requests being answered", registry=self.registry)
        self.batch_rows = Histogram(
            "vaeserve_batch_size", "rows per ONNX Runtime call of the micro-batcher", ["model", "operation"],
            buckets=BATCH_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.refused = Counter(
            "vaeserve_refused_inputs", "requests refused as bad input, by problem type", ["route", "reason"],
            registry=self.registry,
        )  # fmt: skip
        self.registry.register(_ServingCollector(serving))
        self._serving = serving
        self.registry.register(MonitoringCollector(self.monitors))
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def monitors(self) -> list[ModelMonitor]:
        """The monitors of the models serving now (none while they load, or with monitoring off)."""
        registry = self._serving()
        return registry.monitors() if registry is not None else []

    def observe_request(self, route: str, method: str, status: int, seconds: float, problem: str | None = None) -> None:
        """One answered request; `problem` is the slug of the error it was answered with, if any."""
        key = (route, method, status)  # few: route templates x methods x statuses
        children = self._request_children.get(key)
        if children is None:  # labels() takes a lock and builds its key each time: once per label set
            labels = (route, method, str(status))
            children = self._request_children[key] = (self.requests.labels(*labels), self.latency.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)
        if problem is not None and status in REFUSED_STATUSES:
            self.refused.labels(route, problem).inc()

    def batch_observer(self, model: str, operation: str) -> Callable[[int], None]:
        return self.batch_rows.labels(model, operation).observe


class _ServingCollector(Collector):
    """Queue depth per model and operation, and what each loaded model is."""

    def __init__(self, serving: Callable[[], Any]) -> None:
        self._serving = serving

    def collect(self) -> Iterator[GaugeMetricFamily | InfoMetricFamily]:
        depth = GaugeMetricFamily(
            "vaeserve_queue_depth", "requests waiting in a micro-batcher", labels=["model", "operation"]
        )
        info = InfoMetricFamily("vaeserve_model", "models loaded and serving", labels=["model"])
        registry = self._serving()
        for model in registry.all() if registry is not None else []:
            m = model.manifest
            info.add_metric(
                [model.key],
                {"name": m.name, "version": m.version, "latent_dim": str(m.latent_dim),
                 "likelihood": m.likelihood.kind, "encoder_sha256": m.files["encoder.onnx"].sha256,
                 "default": str(model is registry.default).lower()},
            )  # fmt: skip
            for operation, batcher in model.executors.items():
                depth.add_metric([model.key, operation], batcher.depth)
        yield depth
        yield info

"""The metric spec of docs/monitoring.md, read from its table, and what tests derive from it:
the series names each metric exposes, the names a PromQL text uses, and a registry holding
one sample of every metric in the spec."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

DOC = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",), "info": ("_info",)}  # fmt: skip
EXAMPLE_LABELS = {
    "route": "/v1/score", "method": "POST", "status": "200", "model": "mnist-vae", "version": "1",
    "operation": "score", "score": "mse", "decision": "anomaly", "reason": "invalid-image", "test": "mmd",
    "dimension": "0",
}  # fmt: skip
_ROW = re.compile(r"^\| `(vaeserve_[a-z_]+)` \| (counter|gauge|histogram|info) \|([^|]*)\|")
_NAME = re.compile(r"\bvaeserve[_:][A-Za-z0-9_:]*")


@dataclass(frozen=True)
class SpecMetric:
    name: str  # the family's name, as registered with prometheus_client
    type: str
    labels: tuple[str, ...]
    planned: bool  # the service does not expose it yet

    @property
    def series(self) -> set[str]:
        """The sample names Prometheus stores for it."""
        return {self.name + suffix for suffix in SUFFIXES[self.type]}


def spec_metrics() -> dict[str, SpecMetric]:
    """Every row of the metric table in docs/monitoring.md, by name."""
    found = {}
    for line in DOC.read_text().splitlines():
        if match := _ROW.match(line):
            name, kind, labels = match.groups()
            found[name] = SpecMetric(name, kind, tuple(re.findall(r"`([a-z0-9_]+)`", labels)), "*planned.*" in line)
    return found


def spec_series() -> set[str]:
    return {series for metric in spec_metrics().values() for series in metric.series}


def names_in(text: str) -> set[str]:
    """The vaeserve metric and recording-rule names a PromQL expression (or any text) mentions."""
    return set(_NAME.findall(text))


def registry_with_every_metric() -> tuple[CollectorRegistry, dict[str, Counter | Gauge | Histogram | Info]]:
    """A registry with one child per spec metric, labelled with EXAMPLE_LABELS (both drift tests)."""
    registry = CollectorRegistry()
    made: dict[str, Counter | Gauge | Histogram | Info] = {}
    kinds = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}
    for metric in spec_metrics().values():
        labels = [label for label in metric.labels if metric.type != "info" or label == "model"]
        if metric.type == "info":
            info = Info(metric.name, metric.name, labels, registry=registry)
            info.labels(EXAMPLE_LABELS["model"]).info({label: "x" for label in metric.labels if label != "model"})
            made[metric.name] = info
            continue
        made[metric.name] = kinds[metric.type](metric.name, metric.name, labels, registry=registry)
        for test in ("mmd", "ks") if labels else ():  # a metric without labels has its one sample already
            values = {**EXAMPLE_LABELS, "test": test}
            made[metric.name].labels(**{label: values[label] for label in labels})
    return registry, made

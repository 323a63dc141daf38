"""A real Prometheus scraping a real exposition: values move, the shipped anomaly-rate rule fires,
and every dashboard query finds the spec's metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from bench.harness import free_port
from tests.monitoring.conftest import SHIPPED_RULES, Prometheus, assert_every_dashboard_query_has_data, fast_copy
from tests.monitoring.spec import EXAMPLE_LABELS, registry_with_every_metric, spec_metrics

MODEL = {"model": EXAMPLE_LABELS["model"], "version": EXAMPLE_LABELS["version"]}
SELECTOR = '{model="mnist-vae", version="1"}'


@pytest.fixture
def exposition() -> Iterator[tuple[str, CollectorRegistry, dict]]:
    """A prometheus_client HTTP exposition on 127.0.0.1 of one sample of every spec metric: (url, registry, metrics)."""
    registry, metrics = registry_with_every_metric()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{port}", registry, metrics
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_anomaly_rate_goes_up_and_the_alert_fires(
    start_prometheus: Callable[..., Prometheus], exposition: tuple[str, CollectorRegistry, dict], tmp_path: Path
) -> None:
    url, _, metrics = exposition
    rate = metrics["vaeserve_anomaly_rate"].labels(**MODEL)
    rate.set(0.01)
    metrics["vaeserve_calibration_false_positive_rate"].labels(**MODEL).set(0.01)
    metrics["vaeserve_anomaly_rate_window"].labels(**MODEL).set(500)
    prom = start_prometheus(url, rules=[*SHIPPED_RULES, fast_copy(tmp_path, "VaeserveAnomalyRateHigh")])

    prom.wait_until(lambda: prom.value(f"vaeserve_anomaly_rate{SELECTOR}") == 0.01, "the first scrape")
    prom.wait_until(lambda: all(r["health"] == "ok" for r in prom.rules()), "every rule evaluated")
    assert {r["name"] for r in prom.rules()} >= {
        "VaeserveAnomalyRateHigh",
        "VaeserveLatentDrift",
        "vaeserve:request_errors:ratio_rate5m",
    }
    assert all(r.get("lastError", "") == "" for r in prom.rules())
    assert prom.alert_state("VaeserveAnomalyRateHighFast") == "inactive"  # 1 % is the calibrated rate

    rate.set(0.05)  # over 0.01 + 3 sqrt(0.01 * 0.99 / 500) = 0.0233
    prom.wait_until(lambda: prom.value(f"vaeserve_anomaly_rate{SELECTOR}") == 0.05, "the new value scraped")
    prom.wait_until(lambda: prom.alert_state("VaeserveAnomalyRateHighFast") == "firing", "the alert firing")
    assert prom.alert_state("VaeserveAnomalyRateHigh") == "pending"  # the shipped rule holds for 10 minutes
    firing = prom.query('ALERTS{alertname="VaeserveAnomalyRateHighFast", alertstate="firing"}')
    assert [a["metric"]["model"] for a in firing] == ["mnist-vae"] and firing[0]["metric"]["severity"] == "warning"

    rate.set(0.02)  # under the bound again
    prom.wait_until(lambda: prom.alert_state("VaeserveAnomalyRateHighFast") == "inactive", "the alert resolving")


def test_every_dashboard_query_finds_data_in_the_spec_metrics(
    start_prometheus: Callable[..., Prometheus], exposition: tuple[str, CollectorRegistry, dict]
) -> None:
    """With one sample of every spec metric scraped, each panel's query gives at least one series."""
    url, _, metrics = exposition
    prom = start_prometheus(url)
    for name in ("vaeserve_requests", "vaeserve_decisions", "vaeserve_refused_inputs"):  # counters that move
        metrics[name].labels(**{label: EXAMPLE_LABELS[label] for label in spec_metrics()[name].labels}).inc()
    prom.wait_until(lambda: (prom.value('count(up{job="vaeserve"} == 1)') or 0) >= 1, "the first scrape")
    prom.wait_until(lambda: (prom.value("count_over_time(vaeserve_requests_in_flight[1m])") or 0) >= 2, "two scrapes")
    assert_every_dashboard_query_has_data(prom, 10)

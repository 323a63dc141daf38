"""A real Prometheus scraping a live vaeserve on the shipped model: normal digits, then rotated
ones; through Prometheus's query API the anomaly rate and the latent drift move and the shipped
alerts (fast copies: `for: 1s`) fire; every dashboard query finds data in the real service."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest

from bench.dashboard import send_images
from bench.harness import PORT, Live, serve, without_settings
from tests.helpers import rotated, shipped_test_split
from tests.monitoring.conftest import SHIPPED_RULES, Prometheus, assert_every_dashboard_query_has_data, fast_copy

MODEL = '{model="mnist-vae", version="1"}'
WINDOW = 500  # VAESERVE_ANOMALY_RATE_WINDOW and VAESERVE_DRIFT_WINDOW, the defaults


@pytest.fixture(scope="module")
def traffic() -> tuple[np.ndarray, np.ndarray]:
    """(normal, shifted): 500 digits of the shipped model's training split, and its 500 held-out test digits
    turned by 90°.

    Normal traffic is the training split because the shipped bundle flags 3.0 % of its held-out test
    digits (its threshold comes from 250 calibration images, docs/monitoring.md#alerts), over the alert's
    bound of 2.33 % at a 1 % calibrated rate; on its training split it flags 1.0 %.
    """
    pytest.importorskip("torch")  # training.data rebuilds the bundle's splits
    from training.data import bundle_arrays

    manifest, test = shipped_test_split()
    return bundle_arrays(manifest)["train"][:WINDOW], rotated(test)


@pytest.fixture(scope="module")
def service() -> Iterator[Live]:
    env = without_settings(VAESERVE_DRIFT_INTERVAL_S="0.5", VAESERVE_LOG_FORMAT="text")
    with serve([sys.executable, "-m", "app", "--port", PORT, "--log-level", "warning"], env=env, timeout_s=120) as live:
        yield live


def _report_covers_all_sent(prom: Prometheus, live: Live) -> Callable[[], bool]:
    """Whether Prometheus holds the service's newest drift report, and that report tested the newest latent."""

    def check() -> bool:
        doc = httpx.get(f"{live.url}/v1/models/mnist-vae/monitoring", timeout=10).json()
        drift = doc["drift"]
        if not drift or drift["window"]["last"] != doc["latents"]["last"]:
            return False
        computed = datetime.fromisoformat(drift["computed_at"].replace("Z", "+00:00")).timestamp()
        scraped = prom.value(f"vaeserve_latent_drift_timestamp_seconds{MODEL}")
        return scraped is not None and abs(scraped - computed) < 1e-3

    return check


def test_anomaly_rate_and_drift_move_and_the_alerts_fire(
    start_prometheus: Callable[..., Prometheus], service: Live, traffic: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    normal, shifted = traffic
    rules = [*SHIPPED_RULES, fast_copy(tmp_path, "VaeserveAnomalyRateHigh"), fast_copy(tmp_path, "VaeserveLatentDrift")]
    prom = start_prometheus(service.url, rules=rules)
    prom.wait_until(lambda: prom.value('up{job="vaeserve"}') == 1.0, "the first scrape")

    with httpx.Client(timeout=60) as client:
        send_images(client, service.url, normal)
        prom.wait_until(_report_covers_all_sent(prom, service), "a drift report of the normal traffic", 60)
        prom.wait_until(lambda: prom.value(f"vaeserve_anomaly_rate_window{MODEL}") == WINDOW, "a full window", 30)
        prom.wait_until(lambda: all(r["health"] == "ok" for r in prom.rules()), "every rule evaluated")
        normal_rate = prom.value(f"vaeserve_anomaly_rate{MODEL}")
        normal_mmd = prom.value('vaeserve_latent_drift_statistic{model="mnist-vae", version="1", test="mmd"}')
        normal_p = prom.value('vaeserve_latent_drift_p_value{model="mnist-vae", version="1", test="mmd"}')
        assert normal_rate is not None and normal_rate <= 0.0233  # under the alert's bound at fpr 1 %, n = 500
        assert normal_p is not None and normal_p > 0.05 and normal_mmd is not None
        assert prom.value(f"vaeserve_latent_drift_window{MODEL}") == WINDOW
        # The counter itself, not increase(): the series is born at the first decision, and when all 500
        # land between two scrapes its first sample is already 500, so increase() over it is 0.
        decided = prom.value(f"sum(vaeserve_decisions_total{MODEL})")
        normal_decisions = prom.value(f'sum(vaeserve_decisions_total{{decision="normal", {MODEL[1:]})')
        assert decided == WINDOW and normal_decisions == round(WINDOW * (1 - normal_rate))
        time.sleep(2)  # two evaluations on the normal numbers
        assert (
            prom.alert_state("VaeserveAnomalyRateHighFast") == prom.alert_state("VaeserveLatentDriftFast") == "inactive"
        )

        send_images(client, service.url, shifted)
        prom.wait_until(_report_covers_all_sent(prom, service), "a drift report of the rotated traffic", 60)
        prom.wait_until(lambda: prom.alert_state("VaeserveAnomalyRateHighFast") == "firing", "the anomaly alert firing")
        prom.wait_until(lambda: prom.alert_state("VaeserveLatentDriftFast") == "firing", "the drift alert firing")
        shifted_rate = prom.value(f"vaeserve_anomaly_rate{MODEL}")
        shifted_mmd = prom.value('vaeserve_latent_drift_statistic{model="mnist-vae", version="1", test="mmd"}')
        assert shifted_rate is not None and shifted_rate > 0.5 > 10 * normal_rate
        assert shifted_mmd is not None and shifted_mmd > 10 * max(normal_mmd, 1e-3)
        assert prom.value('vaeserve_latent_drift_p_value{model="mnist-vae", version="1", test="mmd"}') == 1 / 501
        assert prom.value(f"vaeserve_latent_drift_dimensions_flagged{MODEL}") >= 8
        assert prom.alert_state("VaeserveAnomalyRateHigh") == "pending"  # the shipped rules hold for minutes
        firing = prom.query('ALERTS{alertstate="firing"}')
        assert {a["metric"]["alertname"] for a in firing} >= {"VaeserveAnomalyRateHighFast", "VaeserveLatentDriftFast"}
        assert all(a["metric"]["model"] == "mnist-vae" and a["metric"]["version"] == "1" for a in firing)

        # The JSON endpoint gives the numbers Prometheus scraped (no traffic since).
        doc = client.get(f"{service.url}/v1/models/mnist-vae/monitoring").json()
        assert doc["anomaly_rate"]["rate"] == shifted_rate and doc["drift"]["mmd"]["statistic"] == shifted_mmd


def test_every_dashboard_query_finds_data_in_the_live_service(
    start_prometheus: Callable[..., Prometheus], service: Live, traffic: tuple[np.ndarray, np.ndarray]
) -> None:
    prom = start_prometheus(service.url)
    with httpx.Client(timeout=60) as client:
        prom.wait_until(lambda: prom.value('up{job="vaeserve"}') == 1.0, "the first scrape")
        send_images(client, service.url, traffic[0][:64])
        assert (
            client.post(f"{service.url}/v1/score", content=b"x", headers={"content-type": "image/png"}).status_code
            == 400
        )
        client.post(f"{service.url}/v1/encode", content=b"{}", headers={"content-type": "application/json"})
    prom.wait_until(lambda: (prom.value('count_over_time(up{job="vaeserve"}[1m])') or 0) >= 3, "three scrapes")
    assert_every_dashboard_query_has_data(prom, 30)

"""/metrics: Prometheus text with the service's metric families and real values."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from app.settings import Settings

KEY = "metrics-key-0123456789"


def _families(text: str) -> dict[str, dict]:
    return {f.name: {tuple(sorted(s.labels.items())): s.value for s in f.samples} | {"_type": f.type}
            for f in text_string_to_metric_families(text)}  # fmt: skip


def test_metrics_report_requests_latency_batches_queues_and_models(client: TestClient, digit_arrays) -> None:
    client.post("/v1/encode", json={"arrays": digit_arrays.tolist()})
    client.get("/v1/models/nope")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=")
    f = _families(r.text)
    assert {"vaeserve_requests", "vaeserve_request_duration_seconds", "vaeserve_requests_in_flight",
            "vaeserve_batch_size", "vaeserve_queue_depth", "vaeserve_model_info"} <= set(f)  # fmt: skip
    assert f["vaeserve_requests"][(("method", "POST"), ("route", "/v1/encode"), ("status", "200"))] >= 1
    assert f["vaeserve_requests"][(("method", "GET"), ("route", "/v1/models/{name}"), ("status", "404"))] >= 1
    assert f["vaeserve_request_duration_seconds"]["_type"] == "histogram"
    batch = f["vaeserve_batch_size"]
    assert batch[(("model", "digits:1"), ("operation", "encode"))] >= 4  # the sum of rows: 4 images at least
    assert f["vaeserve_queue_depth"][(("model", "digits:1"), ("operation", "score"))] == 0
    info = [labels for labels in f["vaeserve_model_info"] if labels != "_type"]
    assert (("default", "true"), ("encoder_sha256", client.get("/v1/models/digits?version=1").json()["files"]["encoder.onnx"]),
            ("latent_dim", "4"), ("likelihood", "bernoulli"), ("model", "digits:1"), ("name", "digits"),
            ("version", "1")) in info  # fmt: skip
    assert f["vaeserve_requests_in_flight"][()] == 1  # this scrape itself


def test_metrics_key_is_configurable(repository: Path) -> None:
    for need_key, status in ((False, 200), (True, 401)):
        settings = Settings(model_repository=repository, api_keys=[KEY], metrics_need_key=need_key)
        with TestClient(create_app(settings)) as c:
            assert c.get("/metrics").status_code == status
            assert c.get("/metrics", headers={"X-API-Key": KEY}).status_code == 200
            assert c.get("/healthz").status_code == 200

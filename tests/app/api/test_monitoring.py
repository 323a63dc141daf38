"""Model monitoring through the real app: GET /v1/models/{name}/monitoring and the model
metrics on /metrics, per model and version, fed by v1 and v2 alike; drift against a direct
computation on the latents the service answered with; refused inputs; reloads; off."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from app.settings import Settings
from model.bundle import load_bundle, write_bundle
from model.drift import drift_report
from tests.app.api.test_v2 import tensor
from tests.monitoring.spec import spec_metrics

KEY = "monitoring-key-0123456789"
DRIFT_WINDOW = 40


@pytest.fixture(scope="module")
def client(repository: Path) -> Iterator[TestClient]:
    settings = Settings(model_repository=repository, default_model="digits:1", anomaly_rate_window=50,
                        drift_window=DRIFT_WINDOW, drift_interval_s=0.05)  # fmt: skip
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def samples(client: TestClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of /metrics by sample name: [(labels, value)]."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    matching = [v for sample_labels, v in found.get(name, []) if labels.items() <= sample_labels.items()]
    assert len(matching) == 1, (name, labels, found.get(name))
    return matching[0]


def monitoring(client: TestClient, name: str, version: str | None = None) -> dict[str, Any]:
    r = client.get(f"/v1/models/{name}/monitoring", params={"version": version} if version else {})
    assert r.status_code == 200, r.text
    return r.json()


def wait_for_drift(client: TestClient, name: str, version: str, size: int) -> dict[str, Any]:
    """The monitoring document once its drift report tested `size` latents, the newest included."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        doc = monitoring(client, name, version)
        drift = doc["drift"]
        if drift and drift["window"]["size"] == size and drift["window"]["last"] == doc["latents"]["last"]:
            return doc
        time.sleep(0.05)
    raise AssertionError(f"no drift report of the {size} newest latents")


def drift_threads() -> int:
    return [t.name for t in threading.enumerate()].count("drift-reports")


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_encode_and_score_are_monitored_per_model_and_version_from_v1_and_v2(client, digit_images) -> None:
    before = {v: monitoring(client, "digits", v) for v in ("1", "2")}
    assert client.post("/v1/encode", json={"arrays": digit_images[:3].tolist()}).status_code == 200
    r = client.post("/v1/score?model=digits&version=2&score=neg_elbo", json={"arrays": digit_images[:5].tolist()})
    assert r.status_code == 200
    v2 = client.post("/v2/models/digits-scorer/versions/1/infer", json={"inputs": [tensor("image", digit_images[:2])]})
    assert v2.status_code == 200
    one, two = monitoring(client, "digits", "1"), monitoring(client, "digits", "2")
    assert (one["model"], one["version"], two["version"]) == ("digits", "1", "2")
    assert one["images_encoded"] - before["1"]["images_encoded"] == 3
    assert one["images_scored"] - before["1"]["images_scored"] == 2  # the v2 scorer
    assert two["images_scored"] - before["2"]["images_scored"] == 5
    assert two["images_encoded"] == before["2"]["images_encoded"]
    decided = {(d["score"], d["decision"]): d["images"] for d in two["decisions"]}
    anomalies = sum(result["is_anomaly"] for result in r.json()["results"])
    was = {(d["score"], d["decision"]): d["images"] for d in before["2"]["decisions"]}
    assert decided[("neg_elbo", "anomaly")] - was.get(("neg_elbo", "anomaly"), 0) == anomalies
    assert decided[("neg_elbo", "normal")] - was.get(("neg_elbo", "normal"), 0) == 5 - anomalies
    assert monitoring(client, "digits")["version"] == "2"  # the highest version without `version`
    found = samples(client)
    for version, doc in (("1", one), ("2", two)):
        assert (
            value(found, "vaeserve_score_count", model="digits", version=version, score="mse")
            == doc["scores"]["mse"]["count"]
        )


def test_the_json_and_the_metrics_give_the_same_numbers(client, digit_images) -> None:
    client.post("/v1/score", json={"arrays": digit_images[:DRIFT_WINDOW].tolist()})  # fills the drift window
    wait_for_drift(client, "digits", "1", DRIFT_WINDOW)
    doc, found = monitoring(client, "digits", "1"), samples(client)
    model = {"model": "digits", "version": "1"}
    rate = doc["anomaly_rate"]
    assert rate["rate"] == value(found, "vaeserve_anomaly_rate", **model) == rate["anomalies"] / rate["window"]["size"]
    assert rate["window"]["size"] == value(found, "vaeserve_anomaly_rate_window", **model) <= 50
    assert rate["false_positive_rate"] == value(found, "vaeserve_calibration_false_positive_rate", **model)
    for name, histogram in doc["scores"].items():
        buckets = [
            v for labels, v in found["vaeserve_score_bucket"] if labels.items() >= {**model, "score": name}.items()
        ]
        assert buckets == [*histogram["cumulative"], histogram["count"]]
        if histogram["edges"][0] >= 0:
            assert histogram["sum"] == pytest.approx(value(found, "vaeserve_score_sum", **model, score=name), rel=1e-9)
        else:  # OpenMetrics: no _sum (and so no _count) beside negative buckets; +Inf counts them all
            assert not [s for s in found["vaeserve_score_sum"] if s[0]["score"] == name]
        assert histogram["threshold"] == value(found, "vaeserve_calibration_threshold", **model, score=name)
    assert doc["scores"][rate["score"]]["threshold"] == rate["threshold"]
    assert value(found, "vaeserve_p_value_count", **model, score=rate["score"]) == doc["p_values"]["count"]
    assert value(found, "vaeserve_input_mean_intensity_count", **model) == doc["input_mean_intensity"]["count"]
    for d in doc["decisions"]:
        assert (
            value(found, "vaeserve_decisions_total", **model, score=d["score"], decision=d["decision"]) == d["images"]
        )
    drift = doc["drift"]
    assert value(found, "vaeserve_latent_drift_p_value", **model, test="mmd") == drift["mmd"]["p_value"]
    assert value(found, "vaeserve_latent_drift_statistic", **model, test="ks") == drift["ks"]["statistic"]
    assert value(found, "vaeserve_latent_drift_window", **model) == drift["window"]["size"] == DRIFT_WINDOW
    assert value(found, "vaeserve_latent_drift_dimensions_flagged", **model) == len(drift["ks"]["flagged"])
    assert value(found, "vaeserve_latent_mean_shift", **model, dimension="3") == drift["mean_shift"][3]
    assert value(found, "vaeserve_latent_drift_timestamp_seconds", **model) == pytest.approx(
        _epoch(drift["computed_at"]), abs=1e-3
    )


def test_service_drift_is_model_drift_on_the_latents_it_answered_with(repository: Path, digit_images) -> None:
    """The posterior means /v1/encode returns, tested directly with model/drift.py, give the report the service made."""
    settings = Settings(model_repository=repository, drift_window=DRIFT_WINDOW, drift_interval_s=0.05)
    with TestClient(create_app(settings)) as c:
        means = []
        for i in range(0, DRIFT_WINDOW + 8, 8):  # more than the window holds: the oldest leave
            r = c.post("/v1/encode?model=other", json={"arrays": digit_images[i : i + 8].tolist()})
            means += [row["mean"] for row in r.json()["results"]]
        drift = wait_for_drift(c, "other", "1", DRIFT_WINDOW)["drift"]
    latents = np.asarray(means, np.float32).astype(np.float64)[-DRIFT_WINDOW:]  # float32 on the wire, exactly
    expected = drift_report(load_bundle(repository / "other" / "1").manifest.latents, latents)
    assert drift["mmd"]["statistic"] == pytest.approx(expected.mmd.statistic, rel=1e-9, abs=1e-15)
    assert drift["mmd"]["p_value"] == expected.mmd.p_value and drift["mmd"]["bandwidth"] == pytest.approx(
        expected.mmd.bandwidth, rel=1e-12
    )
    assert drift["ks"]["statistics"] == pytest.approx(expected.ks.statistics, rel=1e-12)
    assert drift["ks"]["adjusted_p_values"] == pytest.approx(expected.ks.adjusted, rel=1e-9)
    assert drift["ks"]["flagged"] == list(expected.ks.flagged)
    assert drift["mean_shift"] == pytest.approx(expected.shift.mean, rel=1e-9)
    assert drift["std_shift"] == pytest.approx(expected.shift.std, rel=1e-9)
    assert drift["reference"] == expected.reference and drift["mmd"]["permutations"] == 500


def test_refused_inputs_are_counted_by_route_and_reason(client, digit_pngs) -> None:
    def refused(route: str, reason: str) -> float:
        return sum(v for labels, v in samples(client).get("vaeserve_refused_inputs_total", [])
                   if labels == {"route": route, "reason": reason})  # fmt: skip

    cases = [
        ("/v1/score", "invalid-image", lambda: client.post("/v1/score", content=b"not a png", headers={"content-type": "image/png"})),
        ("/v1/score", "invalid-json", lambda: client.post("/v1/score", content=b"{", headers={"content-type": "application/json"})),
        ("/v1/encode", "too-many-images", lambda: client.post("/v1/encode", json={"arrays": [[[0.0]]] * 300})),
        ("/v1/encode", "unsupported-media-type", lambda: client.post("/v1/encode", content=b"x", headers={"content-type": "text/plain"})),
        ("/v1/score", "invalid-input", lambda: client.post("/v1/score", content=b'{"arrays": [[[NaN]]]}',
                                                           headers={"content-type": "application/json"})),
        ("/v2/models/{model_name}/infer", "invalid-inference-request",
         lambda: client.post("/v2/models/digits-scorer/infer", json={"inputs": []})),
    ]  # fmt: skip
    for route, reason, send in cases:
        before = refused(route, reason)
        assert send().status_code in (400, 413, 415, 422)
        assert refused(route, reason) == before + 1, (route, reason)
    total = sum(v for _, v in samples(client)["vaeserve_refused_inputs_total"])
    assert client.get("/v1/models/nope").status_code == 404  # not found is no bad input
    assert client.post("/v1/score", content=digit_pngs[0], headers={"content-type": "image/png"}).status_code == 200
    assert sum(v for _, v in samples(client)["vaeserve_refused_inputs_total"]) == total


def test_every_metric_of_the_spec_is_exposed_with_its_labels(client, digit_images) -> None:
    client.post("/v1/score", json={"arrays": digit_images[:DRIFT_WINDOW].tolist()})
    client.post("/v1/score", content=b"x", headers={"content-type": "image/png"})
    wait_for_drift(client, "digits", "1", DRIFT_WINDOW)
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    for name, metric in spec_metrics().items():
        # The Prometheus text format has no info type: an info metric is a gauge named <name>_info.
        family = families.get(name + "_info" if metric.type == "info" else name)
        kind = "gauge" if metric.type == "info" else metric.type
        assert family is not None and family.type == kind and family.samples, name
        for sample in family.samples:
            labels = set(sample.labels) - {"le"}
            if metric.type == "info":
                assert "model" in labels and labels <= set(metric.labels), (name, sample.labels)
            else:
                assert labels == set(metric.labels), (name, sample.labels)


def test_unknown_models_and_monitoring_off_answer_404(repository: Path, client, digit_images) -> None:
    r = client.get("/v1/models/nope/monitoring")
    assert r.status_code == 404 and r.json()["detail"] == "no model named 'nope'"
    assert client.get("/v1/models/digits/monitoring?version=9").status_code == 404
    threads = drift_threads()  # the module's client has one
    with TestClient(create_app(Settings(model_repository=repository, monitoring=False))) as off:
        assert off.post("/v1/score", json={"arrays": digit_images[:2].tolist()}).status_code == 200
        r = off.get("/v1/models/digits/monitoring")
        assert r.status_code == 404 and r.json()["type"] == "urn:vaeserve:problem:monitoring-off"
        found = samples(off)
        assert "vaeserve_anomaly_rate" not in found and "vaeserve_score_bucket" not in found
        assert drift_threads() == threads


def test_a_reload_keeps_the_monitors_of_unchanged_bundles_and_renews_changed_ones(repository: Path, tmp_path: Path,
                                                                                  digit_images) -> None:  # fmt: skip
    root = tmp_path / "repo"
    shutil.copytree(repository, root)
    settings = Settings(model_repository=root, api_keys=[KEY], drift_interval_s=0.05)
    threads = drift_threads()
    with TestClient(create_app(settings)) as c:
        auth = {"X-API-Key": KEY}
        for version in ("1", "2"):
            c.post(
                f"/v1/score?model=digits&version={version}", json={"arrays": digit_images[:3].tolist()}, headers=auth
            )
        old = {v: c.get(f"/v1/models/digits/monitoring?version={v}", headers=auth).json() for v in ("1", "2")}
        changed = load_bundle(root / "digits" / "2")
        files = {name: (changed.path / name).read_bytes() for name in changed.manifest.files}
        shutil.rmtree(root / "digits" / "2")
        write_bundle(root / "digits" / "2", changed.manifest.model_copy(update={"description": "retrained"}), files)
        for _ in range(2):
            assert c.post("/v1/admin/reload", headers=auth).status_code == 200
        new = {v: c.get(f"/v1/models/digits/monitoring?version={v}", headers=auth).json() for v in ("1", "2")}
        assert new["1"]["images_scored"] == old["1"]["images_scored"] == 3 and new["1"]["since"] == old["1"]["since"]
        assert new["2"]["images_scored"] == 0 and new["2"]["since"] > old["2"]["since"]
        assert drift_threads() == threads + 1  # reloads start none
    assert drift_threads() == threads

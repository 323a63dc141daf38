"""The deployment files, validated offline: Kubernetes schemas, Compose, the Dockerfile."""

from __future__ import annotations

import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

DOCKER = Path(__file__).resolve().parents[2] / "docker"
MONITORING = DOCKER / "monitoring"
ROOT = DOCKER.parent
K8S_VERSION = "1.30.0"
# From the Prometheus Operator's PodMonitor CRD (monitoring.coreos.com/v1): fields we may use, and its Duration pattern.
POD_MONITOR_FIELDS = {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel", "podTargetLabels"}
ENDPOINT_FIELDS = {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels", "relabelings"}
DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")


def _k8s_documents() -> list[tuple[str, dict]]:
    return [
        (path.name, doc)
        for path in sorted((DOCKER / "k8s").glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
    ]


@pytest.mark.parametrize(("name", "doc"), _k8s_documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_kubernetes_manifests_are_valid(name: str, doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((DOCKER / "k8s" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in (DOCKER / "k8s").glob("*.yaml") if p.name != "kustomization.yaml")


def test_deployment_probes_resources_and_settings() -> None:
    docs = {doc["kind"]: doc for _, doc in _k8s_documents()}
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert set(container["resources"]) == {"requests", "limits"}
    assert docs["Deployment"]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
    # Every setting in the ConfigMap is one the service knows, with a value it accepts.
    data = docs["ConfigMap"]["data"]
    fields = {f"VAESERVE_{name.upper()}" for name in Settings.model_fields}
    assert set(data) <= fields, set(data) - fields
    settings = {key.removeprefix("VAESERVE_").lower(): value for key, value in data.items()}
    settings["model_repository"] = str(ROOT / "model" / "zoo")  # /models exists only in the pod
    Settings(**settings)


def test_compose_and_prometheus() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    service = compose["services"]["vaeserve"]
    assert service["build"]["args"]["BASE_IMAGE"] == "python:3.11-slim"
    assert all(port.startswith("127.0.0.1:") for port in service["ports"])
    assert compose["services"]["prometheus"]["profiles"] == ["monitoring"]
    prometheus = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    scrape = prometheus["scrape_configs"][0]
    assert scrape["metrics_path"] == "/metrics" and scrape["static_configs"][0]["targets"] == ["vaeserve:8000"]


def _mounts(service: dict) -> dict[str, Path]:
    """Container path -> host path (relative to docker/) of a Compose service's read-only bind mounts."""
    mounts = {}
    for volume in service["volumes"]:
        host, container, mode = volume.split(":")
        assert mode == "ro" and (DOCKER / host).exists(), volume
        mounts[container] = (DOCKER / host).resolve()
    return mounts


def test_compose_monitoring_profile_runs_prometheus_with_the_rules_and_grafana_with_the_dashboard() -> None:
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["profiles"] == grafana["profiles"] == ["monitoring"]
    assert all(port.startswith("127.0.0.1:") for port in prometheus["ports"] + grafana["ports"])
    mounts = _mounts(prometheus)
    assert mounts["/etc/prometheus/prometheus.yml"] == MONITORING / "prometheus.yml"
    assert mounts["/etc/prometheus/rules"] == MONITORING / "rules"
    rule_files = yaml.safe_load((MONITORING / "prometheus.yml").read_text())["rule_files"]
    assert rule_files == ["rules/*.yml"]  # relative to the config: /etc/prometheus/rules in the container
    mounts = _mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards" / "vaeserve.yml").read_text())["providers"][0]
    dashboards = mounts[provider["options"]["path"]]
    assert dashboards == MONITORING / "grafana" / "dashboards"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert json.loads((dashboards / Path(home).name).read_text())["uid"] == "vaeserve"


def test_pod_monitor_scrapes_the_deployments_pods() -> None:
    """The Operator's CRDs are not in kubernetes-validate: validate its metadata and selector as
    Kubernetes' own types (ObjectMeta, LabelSelector), its fields against the PodMonitor CRD's
    names and duration pattern, and its wiring to docker/k8s and the app's routes."""
    monitor = yaml.safe_load((MONITORING / "k8s" / "podmonitor.yaml").read_text())
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    meta = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": monitor["metadata"]}
    kubernetes_validate.validate(meta, K8S_VERSION, strict=True)
    selector = monitor["spec"]["selector"]
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "check"},
              "spec": {"podSelector": selector}}  # fmt: skip
    kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
    assert set(monitor["spec"]) <= POD_MONITOR_FIELDS
    docs = {doc["kind"]: doc for _, doc in _k8s_documents()}
    pod = docs["Deployment"]["spec"]["template"]
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        assert set(endpoint) <= ENDPOINT_FIELDS
        assert DURATION.match(endpoint["interval"]) and DURATION.match(endpoint["scrapeTimeout"])
        assert endpoint["port"] in ports
        with TestClient(create_app(Settings())) as client:  # the path serves Prometheus text
            scraped = client.get(endpoint["path"])
        assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain; version=")
        assert "# TYPE vaeserve_requests_in_flight gauge" in scraped.text
    assert selector["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert docs["ConfigMap"]["data"]["VAESERVE_WORKERS"] == "1"  # one process per scraped pod
    assert "podmonitor.yaml" not in (DOCKER / "k8s" / "kustomization.yaml").read_text()  # needs the Operator


def test_dockerfile_contract() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.MULTILINE)
    assert text.count("FROM ${BASE_IMAGE}") == 2  # multi-stage: only /opt/vaeserve reaches the final image
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert "HEALTHCHECK" in text and "/healthz" in text
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", text, re.MULTILINE)
    assert entrypoint and json.loads(entrypoint.group(1)) == ["python3", "-m", "app"]  # exec form: PID 1 gets SIGTERM
    assert not re.search(r"install[^\n]*torch", text)  # the image is the serving runtime only


def test_kserve_example_serves_a_bundle_over_v2() -> None:
    """KServe's CRDs are not in kubernetes-validate: check the runtime's container as a Pod's, and the wiring."""
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all((DOCKER / "kserve" / "inferenceservice.yaml").read_text())}
    runtime, service = docs["ServingRuntime"], docs["InferenceService"]
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1" and "v2" in runtime["spec"]["protocolVersions"]
    container = runtime["spec"]["containers"][0]
    assert container["name"] == "kserve-container"  # the name KServe looks for
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": {"containers": [container]}}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    probes = {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
    assert probes == {"/v2/health/ready", "/v2/health/live"}
    assert probes <= set(create_app(Settings()).openapi()["paths"])  # routes the app really has
    env = {e["name"].removeprefix("VAESERVE_").lower(): e["value"] for e in container["env"]}
    assert env.pop("model_repository") == "/mnt/models"  # where KServe's storage initializer puts storageUri
    Settings(**env)
    predictor = service["spec"]["predictor"]
    model = predictor["model"]
    assert service["apiVersion"] == "serving.kserve.io/v1beta1" and model["protocolVersion"] == "v2"
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    claim = yaml.safe_load((DOCKER / "k8s" / "pvc.yaml").read_text())["metadata"]["name"]
    assert model["storageUri"].startswith(f"pvc://{claim}/")
    assert predictor["minReplicas"] <= predictor["maxReplicas"]

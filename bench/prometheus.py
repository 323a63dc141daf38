"""A real Prometheus (Debian's `prometheus`) on 127.0.0.1, scraping one target every second,
and the parts of its HTTP API that tests and benchmarks read.

    rules = [*SHIPPED_RULES, fast_copy(folder, "VaeserveLatentDrift")]
    with run_prometheus("http://127.0.0.1:8123", folder, rules) as prom:
        prom.wait_until(lambda: prom.value("up") == 1.0, "the first scrape")
        prom.alert_state("VaeserveLatentDrift")         # "inactive", "pending" or "firing"
        prom.query_range("vaeserve_anomaly_rate", start, end, step=1.0)

The server gets a free port, its data under `folder` and a generated config (scrape and rule
evaluation every second); it is stopped by its PID when the block ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx
import yaml

from bench import harness
from bench.harness import PORT, ROOT

MONITORING = ROOT / "docker" / "monitoring"
SHIPPED_RULES = tuple(sorted((MONITORING / "rules").glob("*.yml")))
DASHBOARD = MONITORING / "grafana" / "dashboards" / "vaeserve.json"
# Values for the dashboard's variables: the shipped model, and a rate window for 1 s scrapes.
VARIABLES = {"$__rate_interval": "1m", "$model": "mnist-vae", "$version": "1", "$score": "mse"}


def dashboard_query(expr: str, variables: dict[str, str] = VARIABLES) -> str:
    """A panel's PromQL with the dashboard's variables replaced, as Grafana would send it."""
    for variable, value in variables.items():
        expr = expr.replace(variable, value)
    return expr


def dashboard_queries(variables: dict[str, str] = VARIABLES) -> set[str]:
    """Every panel query of the shipped dashboard, variables replaced."""
    dashboard = json.loads(DASHBOARD.read_text())
    return {dashboard_query(t["expr"], variables) for p in dashboard["panels"] for t in p.get("targets", [])}


@dataclass(frozen=True)
class Prometheus:
    """A running Prometheus and the parts of its HTTP API (v1) the tests read."""

    url: str
    client: httpx.Client

    def _get(self, path: str, **params: str) -> Any:
        body = self.client.get(self.url + path, params=params).json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query: the result's samples, each {"metric": labels, "value": [time, "text"]}."""
        data = self._get("/api/v1/query", query=expr)
        if data["resultType"] != "vector":
            raise AssertionError(f"{expr!r} gives a {data['resultType']}, not a vector")
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """A range query: each series {"metric": labels, "values": [[time, "text"], ...]}."""
        data = self._get("/api/v1/query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")
        return list(data["result"])

    def value(self, expr: str) -> float | None:
        """The one sample `expr` gives now, or None when it gives none; more than one is an error."""
        result = self.query(expr)
        if len(result) > 1:
            raise AssertionError(f"{expr!r} gives {len(result)} samples: {result}")
        return float(result[0]["value"][1]) if result else None

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule: name, type ("recording"/"alerting"), health, lastError, state (alerts)."""
        return [rule for group in self._get("/api/v1/rules")["groups"] for rule in group["rules"]]

    def alert_state(self, name: str) -> str:
        """The state of the alerting rule `name`: "inactive", "pending" or "firing"."""
        states = [rule["state"] for rule in self.rules() if rule["type"] == "alerting" and rule["name"] == name]
        if len(states) != 1:
            raise AssertionError(f"{len(states)} alerting rules are named {name}")
        return str(states[0])

    def wait_until(self, check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> float:
        """Poll `check` every 0.1 s until it holds; the seconds it took. AssertionError naming `what` after
        `timeout_s`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if check():
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"Prometheus at {self.url}: {what} did not happen within {timeout_s:g} s")


def prometheus_config(target: str, rules: Sequence[Path]) -> dict[str, Any]:
    """Scrape `target` ("http://host:port" or "host:port", path /metrics) and evaluate `rules`, every second."""
    address = urlsplit(target).netloc if "//" in target else target
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rules],
        "scrape_configs": [
            {"job_name": "vaeserve", "metrics_path": "/metrics", "static_configs": [{"targets": [address]}]}
        ],
    }


def fast_copy(folder: Path, alert: str, hold: str = "1s", rules: Sequence[Path] = SHIPPED_RULES) -> Path:
    """A rule file holding only the shipped alerting rule `alert`, renamed `<alert>Fast` and with
    `for: <hold>`: the same expression, firing within seconds instead of minutes."""
    for path in rules:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alert:
                    fast = {**rule, "alert": f"{alert}Fast", "for": hold}
                    out = folder / f"{alert}-fast.yml"
                    out.write_text(yaml.safe_dump({"groups": [{"name": f"{alert}-fast", "rules": [fast]}]}))
                    return out
    raise LookupError(f"no alerting rule {alert} in {[str(p) for p in rules]}")


@contextmanager
def run_prometheus(
    target: str, folder: Path, rules: Sequence[Path] = SHIPPED_RULES, binary: str = "prometheus"
) -> Iterator[Prometheus]:
    """Prometheus scraping `target` with `rules` (the shipped ones by default), its files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(target, rules)))
    argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{PORT}", "--log.level=warn"]  # fmt: skip
    with httpx.Client(timeout=5.0) as client, harness.serve(argv, ready_path="/-/ready", cwd=folder,
                                                            timeout_s=30.0) as live:  # fmt: skip
        yield Prometheus(live.url, client)

"""A real Prometheus for tests: Debian's `prometheus` on 127.0.0.1, scraping a target every second.

    def test_it(start_prometheus):
        prom = start_prometheus("http://127.0.0.1:8123", rules=[*SHIPPED_RULES, fast_copy(tmp, "VaeserveLatentDrift")])
        prom.wait_until(lambda: prom.value("up") == 1.0, "the first scrape")
        prom.alert_state("VaeserveLatentDrift")          # "inactive", "pending" or "firing"

Each server gets a free port, a temporary data directory and a generated config (scrape and
rule evaluation every second, the given rule files); it is stopped by its PID when the test
ends. Without the binaries the tests skip and say how to install them; under CI (`CI` set)
they fail instead, since CI installs them (`make test` does, as root).
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx
import pytest
import yaml

from bench import harness
from bench.harness import PORT

MONITORING = Path(__file__).resolve().parents[2] / "docker" / "monitoring"
SHIPPED_RULES = tuple(sorted((MONITORING / "rules").glob("*.yml")))


def require_tool(name: str) -> str:
    """The path of Debian's `prometheus` package's `name`; skip without it (fail under CI)."""
    path = shutil.which(name)
    if path is None:
        why = f"{name} is not installed: `make test` installs Debian's prometheus package as root (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI must have it")
        pytest.skip(why)
    return path


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
        """Poll `check` every 0.1 s until it holds; the seconds it took. AssertionError naming `what` after `timeout_s`."""
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


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    """Start a Prometheus scraping `target` with `rules` (the shipped ones by default); stopped at teardown."""
    binary = require_tool("prometheus")
    started = itertools.count()
    with ExitStack() as stack:
        client = stack.enter_context(httpx.Client(timeout=5.0))

        def start(target: str, rules: Sequence[Path] = SHIPPED_RULES) -> Prometheus:
            folder = tmp_path / f"prometheus-{next(started)}"
            folder.mkdir()
            config = folder / "prometheus.yml"
            config.write_text(yaml.safe_dump(prometheus_config(target, rules)))
            argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{PORT}", "--log.level=warn"]  # fmt: skip
            live = stack.enter_context(harness.serve(argv, ready_path="/-/ready", cwd=folder, timeout_s=30.0))
            return Prometheus(live.url, client)

        yield start

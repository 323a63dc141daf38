"""The alerting rules and the dashboard: promtool's checks and unit tests, and only metrics of the spec."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from app.metrics import ServiceMetrics
from bench.prometheus import DASHBOARD
from tests.monitoring.conftest import MONITORING, SHIPPED_RULES, require_tool
from tests.monitoring.spec import names_in, spec_metrics, spec_series

RULE_TESTS = sorted((MONITORING / "tests").glob("*.yml"))


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *map(str, args)], capture_output=True, text=True, timeout=120)


def _rules() -> list[dict]:
    return [
        rule
        for path in SHIPPED_RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    variables = [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs + variables


def test_promtool_checks_the_rules_and_the_compose_config() -> None:
    assert SHIPPED_RULES and RULE_TESTS
    checked = _promtool("check", "rules", *SHIPPED_RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in checked.stdout
    config = _promtool("check", "config", MONITORING / "prometheus.yml")  # loads rules/*.yml beside it too
    assert config.returncode == 0 and "1 rule files found" in config.stdout, config.stdout + config.stderr


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    result = _promtool("test", "rules", *RULE_TESTS)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
    tested = {test["alertname"] for path in RULE_TESTS for case in yaml.safe_load(path.read_text())["tests"]
              for test in case.get("alert_rule_test", [])}  # fmt: skip
    firing = {test["alertname"] for path in RULE_TESTS for case in yaml.safe_load(path.read_text())["tests"]
              for test in case.get("alert_rule_test", []) if test["exp_alerts"]}  # fmt: skip
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    assert tested == firing == alerts  # every alert is shown to fire, and not to fire


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The same tests against rules whose anomaly margin is 30 standard errors instead of 3: they fail."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    for path in SHIPPED_RULES:
        text = path.read_text()
        assert text.count("+ 3 * sqrt(") == 1
        (tmp_path / "rules" / path.name).write_text(text.replace("+ 3 * sqrt(", "+ 30 * sqrt("))
    for path in RULE_TESTS:
        (tmp_path / "tests" / path.name).write_text(path.read_text())
    result = _promtool("test", "rules", *sorted((tmp_path / "tests").glob("*.yml")))
    assert result.returncode == 1 and "alertname: VaeserveAnomalyRateHigh, time: 35m" in result.stdout + result.stderr


def test_rules_and_dashboard_use_only_metrics_of_the_spec() -> None:
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    known = spec_series() | recorded
    used_by_rules = set().union(*(names_in(json.dumps(rule)) for rule in _rules()))  # expressions and annotations
    used_by_dashboard = set().union(*map(names_in, _dashboard_exprs()))
    assert used_by_rules <= known, used_by_rules - known
    assert used_by_dashboard <= known, used_by_dashboard - known
    assert recorded <= used_by_dashboard | used_by_rules  # no recording rule is left unused
    assert names_in("rate(vaeserve_requests_total[5m]) / vaeserve:request_errors:ratio_rate5m") == {
        "vaeserve_requests_total", "vaeserve:request_errors:ratio_rate5m"}  # fmt: skip


def test_dashboard_is_a_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert dashboard["uid"] == "vaeserve" and isinstance(dashboard["schemaVersion"], int)
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"} and panel["targets"]
            assert panel["description"], panel["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "model", "version", "score"}
    for expr in _dashboard_exprs():
        assert set(re.findall(r"\$(\w+)", expr)) <= variables | {"__rate_interval"}, expr


def test_the_service_exposes_the_spec_metrics_it_has_not_planned() -> None:
    """Every family the service registers is in the spec, with its type and labels; and only planned ones are missing."""
    metrics = ServiceMetrics(lambda: None)
    metrics.observe_request("/v1/score", "POST", 200, 0.01)
    metrics.batch_observer("mnist-vae:1", "score")(4)
    spec = spec_metrics()
    exposed = {family.name: family for family in metrics.registry.collect()}
    for name, family in exposed.items():
        assert name in spec and spec[name].type == family.type, name
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= set(spec[name].labels), (name, sample.labels)
    assert {name for name, metric in spec.items() if not metric.planned} == set(exposed)

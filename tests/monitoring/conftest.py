"""A real Prometheus for tests (bench/prometheus.py): Debian's `prometheus` on 127.0.0.1, scraping a target every second.

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest

from bench.prometheus import (
    MONITORING,
    SHIPPED_RULES,
    Prometheus,
    dashboard_queries,
    fast_copy,
    prometheus_config,
    run_prometheus,
)

__all__ = ["MONITORING", "SHIPPED_RULES", "Prometheus", "fast_copy", "prometheus_config", "require_tool"]


def assert_every_dashboard_query_has_data(prom: Prometheus, timeout_s: float) -> None:
    """Wait until each panel query of the shipped dashboard gives at least one series; name those that give none."""
    queries = dashboard_queries()
    try:
        prom.wait_until(lambda: all(prom.query(q) for q in queries), "data for every dashboard query", timeout_s)
    finally:
        empty = [q for q in queries if not prom.query(q)]
        assert not empty and len(queries) >= 20, empty


def require_tool(name: str) -> str:
    """The path of Debian's `prometheus` package's `name`; skip without it (fail under CI)."""
    path = shutil.which(name)
    if path is None:
        why = f"{name} is not installed: `make test` installs Debian's prometheus package as root (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI must have it")
        pytest.skip(why)
    return path


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    """Start a Prometheus scraping `target` with `rules` (the shipped ones by default); stopped at teardown."""
    binary = require_tool("prometheus")
    started = itertools.count()
    with ExitStack() as stack:

        def start(target: str, rules: Sequence[Path] = SHIPPED_RULES) -> Prometheus:
            folder = tmp_path / f"prometheus-{next(started)}"
            return stack.enter_context(run_prometheus(target, folder, rules, binary))

        yield start

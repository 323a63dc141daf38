"""Benchmark results name files relative to the repository, never by this machine's paths."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench.harness import ROOT, repo_path


def test_repo_path() -> None:
    assert repo_path(ROOT / "model" / "zoo" / "mnist-vae" / "1") == "model/zoo/mnist-vae/1"
    temporary = Path(tempfile.gettempdir()) / "vaeserve-load-x1y2" / "repository" / "big-vae" / "1"
    assert repo_path(temporary) == "<tmp>/repository/big-vae/1"
    assert repo_path("/somewhere/else/bundle") == "bundle"


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_stored_results_hold_no_absolute_path() -> None:
    for path in sorted((ROOT / "bench" / "results").glob("*.json")):
        absolute = [s for s in _strings(json.loads(path.read_text())) if s.startswith("/")]
        assert not absolute, f"{path.name}: {absolute[:3]}"

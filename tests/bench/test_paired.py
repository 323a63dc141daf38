"""bench/paired.py: one pair on a real checkout measures both sides and reports their ratio."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.paired import CORES, main


@pytest.mark.skipif(not set(CORES) <= os.sched_getaffinity(0), reason="needs cores 0 and 1")
def test_one_pair_measures_both_sides(tmp_path: Path, capsys) -> None:
    out = tmp_path / "paired.json"
    assert main(["--base", "HEAD", "--pairs", "1", "--requests", "200", "--clients", "8", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    (pair,) = doc["pairs"]
    a, b = pair["a"], pair["b"]
    assert 0 < a["loop_us"] <= a["process_us"] and 0 < b["loop_us"] <= b["process_us"]
    assert a["per_s"] > 0 and b["per_s"] > 0
    assert pair["b_over_a"] == pytest.approx(b["loop_us"] / a["loop_us"]) == doc["median"]
    assert "B/A, median" in capsys.readouterr().out


def test_bad_arguments_are_refused(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--base", "HEAD", "--pairs", "0"])
    assert exc.value.code == 2 and "--pairs in [1, 40]" in capsys.readouterr().err

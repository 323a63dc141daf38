"""bench/peers.py without servers: arguments checked up front, and the report's arithmetic
(medians over rounds, ratios within a round, the one-core bound of each round)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.harness import ROOT
from bench.load import Run
from bench.peers import Model, ModelResult, PeerRun, parse_args, report
from model.bundle import load_bundle

SHIPPED = ROOT / "model" / "zoo" / "mnist-vae" / "1"


def _run(peer: str, wire: str, round_: int, per_s: float) -> PeerRun:
    run = Run(peer, "encode", wire, 64, 1, 10.0, {200: int(per_s * 10)}, {}, {50: 0.01, 99: 0.02}, 1)
    return PeerRun(peer, wire, "ok", round=round_, run=run)


def test_medians_over_rounds_and_ratios_within_each_round(tmp_path: Path) -> None:
    result = ModelResult(Model(SHIPPED, load_bundle(SHIPPED).manifest, tmp_path), rounds=3, ort_rates=[1000.0] * 3)
    ours, theirs, floor = [100.0, 300.0, 200.0], [50.0, 300.0, 400.0], [1000.0, 2000.0, 4000.0]
    for i in range(3):
        result.runs += [_run("vaeserve", "raw PNG", i, ours[i]), _run("pytriton", "binary BYTES tensor", i, theirs[i]),
                        _run("floor", "raw PNG", i, floor[i])]  # fmt: skip
    assert result.per_s("vaeserve") == 200.0 and result.per_s("pytriton") == 300.0
    median, each = result.ratio(("vaeserve", "raw PNG"), "pytriton")
    assert each == [2.0, 1.0, 0.5] and median == 1.0  # not 200 / 300: ratios are taken within a round
    bounds = [1 / (1 / f + 1 / 1000.0) for f in floor]
    assert result.ratio(("vaeserve", "raw PNG"), "bound")[1] == pytest.approx(
        [o / b for o, b in zip(ours, bounds, strict=True)]
    )
    lines = report([result])
    assert any(line.startswith("| vaeserve / PyTriton | 1.00x (0.50-2.00) |") for line in lines)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--peers", ","], "--peers and --models each need at least one name"),
        (["--models", ","], "--peers and --models each need at least one name"),
        (["--models", "nowhere"], "unknown models ['nowhere']"),
        (["--rounds", "0"], "--rounds must be in [1, 20]"),
    ],
)
def test_bad_arguments_are_refused(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_a_broken_bundle_is_refused_before_anything_runs(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "b"
    shutil.copytree(SHIPPED, broken)
    with (broken / "decoder.onnx").open("ab") as f:
        f.write(b"junk")
    with pytest.raises(SystemExit) as exc:
        parse_args(["--models", f"shipped,{broken}"])
    assert exc.value.code == 2 and "sha256 does not match the manifest" in capsys.readouterr().err


def test_a_bundle_whose_graph_onnx_runtime_cannot_load_is_refused_before_anything_runs(tmp_path: Path, capsys) -> None:
    """Checksums right (the manifest rewritten to match), graph broken: still refused up front."""
    import hashlib
    import json

    broken = tmp_path / "b"
    shutil.copytree(SHIPPED, broken)
    graph = broken / "decoder.onnx"
    graph.write_bytes(graph.read_bytes() + b"junk")
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["files"]["decoder.onnx"].update(sha256=hashlib.sha256(graph.read_bytes()).hexdigest(),
                                             bytes=graph.stat().st_size)  # fmt: skip
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit) as exc:
        parse_args(["--models", f"shipped,{broken}"])
    assert exc.value.code == 2 and "cannot load it" in capsys.readouterr().err

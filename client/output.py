"""What the CLI prints: plain aligned tables for people, JSON for programs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from client import results as r


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell; the columns in `right` (numbers) right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = []
    for row in [headers, *rows]:
        cells = [
            str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def number(value: float) -> str:
    """Six significant digits: enough to tell a score from a threshold it is close to."""
    return f"{value:.6g}"


def vector(values: Sequence[float]) -> str:
    return " ".join(f"{v:6.2f}" for v in values)


def as_json(payload: Any) -> str:
    return json.dumps(payload, indent=2)


def json_with_files(answer: BaseModel, files: Sequence[Path], failed: Sequence[tuple[Path, str]] = ()) -> str:
    """An answer as JSON with each result's file name next to it, and the files that failed, if any."""
    payload = answer.model_dump(mode="json")
    payload["results"] = [{"file": str(f), **res} for f, res in zip(files, payload["results"], strict=True)]
    if failed:
        payload["failed"] = [{"file": str(f), "error": why} for f, why in failed]
    return as_json(payload)


def encodings(files: Sequence[Path], answer: r.Encoding) -> str:
    headers = ["file", f"mean ({answer.latent_dim} values)"]
    rows = [[str(f), vector(res.mean)] for f, res in zip(files, answer.results, strict=True)]
    if answer.z is not None:
        headers.append("z")
        rows = [[*row, vector(res.z or [])] for row, res in zip(rows, answer.results, strict=True)]
    return f"model {answer.model}:{answer.version}\n" + table(headers, rows)


def scores(files: Sequence[Path], answer: r.Scores) -> str:
    head = f"model {answer.model}:{answer.version}  score {answer.score}  K={answer.importance_samples}"
    if answer.threshold is not None:
        head += f"  threshold {number(answer.threshold)} (false positive rate {answer.false_positive_rate:g})"
    rows = [
        [
            str(f),
            number(res.score),
            "-" if res.p_value is None else f"{res.p_value:.3g}",
            {True: "ANOMALY", False: "no", None: "-"}[res.is_anomaly],
        ]
        for f, res in zip(files, answer.results, strict=True)
    ]
    return head + "\n" + table(["file", "score", "p-value", "anomaly"], rows, right=[1, 2])


def reconstructions(files: Sequence[Path], written: Sequence[Path], answer: r.Reconstruction) -> str:
    rows = [
        [str(f), str(out), number(res.scores.neg_elbo), number(res.scores.mse)]
        for f, out, res in zip(files, written, answer.results, strict=True)
    ]
    return table(["file", "reconstruction", "neg_elbo", "mse"], rows, right=[2, 3])


def models(answer: r.ModelList) -> str:
    rows = []
    for m in answer.models:
        test = next((x for x in m.metrics if x.split == "test"), None)
        cal = m.calibration
        rows.append(
            [
                f"{m.name}:{m.version}" + (" *" if m.default else ""),
                f"{m.input.channels}x{m.input.height}x{m.input.width}",
                str(m.latent_dim),
                m.likelihood,
                "-" if test is None else f"{test.neg_elbo:.2f}",
                "-" if cal is None else f"{cal.score} > {number(cal.threshold)} (FPR {cal.false_positive_rate:g})",
            ]
        )
    headers = ["model (* default)", "input", "latent", "likelihood", "test neg_elbo", "anomaly when"]
    return table(headers, rows, right=[2, 4])

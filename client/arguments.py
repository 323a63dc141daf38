"""What the CLI reads from its arguments: model names, image files in batches, latents."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, Self, TypedDict, TypeVar

import click
import numpy as np
from numpy.typing import NDArray

from client.errors import VAEServeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class Batched(Protocol):
    """An answer with one result per image (encode, reconstruct, score)."""

    @property
    def results(self) -> Sequence[Any]: ...

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Self: ...


A = TypeVar("A", bound=Batched)


class ModelRef(TypedDict):
    """The `model=` and `version=` of a client call."""

    model: str | None
    version: str | None


class Codes(TypedDict):
    """What interpolate and traverse start from: image files, or latents."""

    images: list[Path] | None
    latents: NDArray[np.float64] | None


def model_ref(value: str | None) -> ModelRef:
    """`name` or `name:version` -> {"model": name, "version": version}; the server's default when empty."""
    name, _, version = (value or "").partition(":")
    return {"model": name or None, "version": version or None}


def image_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a directory stands for the image files in it, sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    if not files:
        raise click.UsageError("no image files found")
    return files


def in_batches(files: list[Path], size: int, ask: Callable[[list[Path]], A]) -> A:
    """One answer for all files, asked `size` files a request: the first answer's header, all results.

    The server names a bad image by its position in the request; the error names its file.
    """
    answers = []
    for start in range(0, len(files), size):
        try:
            answers.append(ask(files[start : start + size]))
        except VAEServeError as exc:
            match = re.match(r"image (\d+): (.*)", exc.detail)
            if match and start + int(match[1]) < len(files):
                exc.detail = f"{files[start + int(match[1])]}: {match[2]}"
                exc.args = (f"{exc.status} {exc.title}: {exc.detail}",)
            raise
    return answers[0].model_copy(update={"results": [result for a in answers for result in a.results]})


def read_latents(source: str | None, values: Sequence[str]) -> NDArray[np.float64]:
    """Latents [N, D] from -z values and a FILE: .npy, JSON [[...]] or {"latents": ...}, or encode's --json."""
    rows: list[Any] = [[float(v) for v in value.replace(",", " ").split()] for value in values]
    if source:
        if source.endswith(".npy"):
            rows += np.load(source, allow_pickle=False).tolist()
        else:
            data = json.loads(sys.stdin.read() if source == "-" else Path(source).read_text())
            if isinstance(data, dict) and "results" in data:  # `vaeserve encode --json`: z when drawn, else mean
                data = [result.get("z") or result["mean"] for result in data["results"]]
            elif isinstance(data, dict):
                data = data.get("latents", [])
            rows += data if data and isinstance(data[0], list) else [data]
    if not rows or not rows[0]:
        raise click.UsageError("give latents: a FILE (.npy or JSON), '-' for stdin, or -z values")
    try:
        return np.asarray(rows, dtype=np.float64)
    except ValueError:
        raise click.UsageError("every latent must have the same number of values") from None

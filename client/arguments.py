"""What the CLI reads from its arguments: model names, image files in batches, latents."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypedDict, TypeVar

import click
import numpy as np
from numpy.typing import NDArray

from client.batching import BODY_BYTES, Batched, Budget, pack
from client.bodies import MULTIPART_PART_BYTES
from client.errors import VAEServeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


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


def image_files(paths: Sequence[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files as given, and a directory's image files, sorted; and the files of directories skipped, with why."""
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        for entry in sorted(path.iterdir()):
            if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
                files.append(entry)
            elif entry.is_file():
                skipped.append((entry, f"not an image file name ({', '.join(sorted(IMAGE_SUFFIXES))})"))
            else:
                skipped.append((entry, _not_a_file(entry)))
    if not files:
        raise click.UsageError("no image files found")
    return files, skipped


def _not_a_file(entry: Path) -> str:
    """Why a directory entry that is not a regular file is skipped."""
    if entry.is_symlink() and not entry.exists():
        return f"a broken symbolic link (to {entry.readlink()}, which does not exist)"
    if entry.is_dir():
        return "a directory (folders are not searched recursively)"
    return "not a regular file"


def plan_requests(files: Sequence[Path], budget: Budget) -> tuple[list[list[Path]], list[tuple[Path, str]]]:
    """Files packed in order into requests within `budget` (images, body bytes);
    and the files too big to go in any request on their own, with why."""
    sizes = {path: path.stat().st_size + len(path.name.encode()) + MULTIPART_PART_BYTES for path in files}
    fits = [path for path in files if sizes[path] + BODY_BYTES <= budget.max_bytes]
    too_big = [(path, f"{path.stat().st_size} bytes is over the server's limit of {budget.max_bytes} bytes "
                      "per request (VAESERVE_MAX_BODY_BYTES)") for path in files if path not in fits]  # fmt: skip
    groups = pack([sizes[path] for path in fits], budget)
    return [[fits[i] for i in group] for group in groups], too_big


@dataclass
class Outcome(Generic[A]):
    """What asking about many files gave: one answer holding every result, and the files that failed."""

    answer: A | None  # the first answer's header with the results of `done`, in order
    done: list[Path]
    failed: list[tuple[Path, str]]


def ask_each(requests: Sequence[Sequence[Path]], ask: Callable[[list[Path]], A]) -> Outcome[A]:
    """Ask request by request; a file the server refuses is left out (and said why), the rest still asked.

    The server names a bad image by its position in the request ("image 2: ..."): that file
    is dropped and the request asked again. A refusal that names no image is asked again file
    by file, so it is pinned on the files it is about. Transport errors end the run.
    """
    answers: list[A] = []
    done: list[Path] = []
    failed: list[tuple[Path, str]] = []
    todo = [list(request) for request in requests]
    while todo:
        files = todo.pop(0)
        try:
            answers.append(ask(files))
            done += files
        except VAEServeError as exc:
            match = re.match(r"image (\d+): (.*)", exc.detail)
            if exc.status not in (400, 413, 415, 422) or (exc.status in (415, 422) and not match):
                raise  # about the server, the key, the model or the parameters: not about one file
            if match and int(match[1]) < len(files):
                bad = files[int(match[1])]
                failed.append((bad, f"{exc.status} {exc.title}: {match[2]}"))
                rest = [f for f in files if f != bad]
                todo[:0] = [rest] if rest else []
            elif len(files) > 1:
                todo[:0] = [[f] for f in files]
            else:
                failed.append((files[0], f"{exc.status} {exc.title}: {exc.detail}"))
    if not answers:
        return Outcome(None, done, failed)
    results = [result for a in answers for result in a.results]
    return Outcome(answers[0].model_copy(update={"results": results}), done, failed)


def read_latents(source: str | None, values: Sequence[str]) -> NDArray[np.float64]:
    """Latents [N, D] from -z values and a FILE: .npy, JSON [[...]] or {"latents": ...}, or encode's --json.

    Raises click.UsageError naming what is wrong: no latents, a value that is not a number,
    a FILE that is not JSON or lacks "latents", rows of different lengths.
    """
    rows: list[Any] = []
    for value in values:
        try:
            rows.append([float(v) for v in value.replace(",", " ").split()])
        except ValueError as exc:
            raise click.UsageError(f"-z {value}: every value must be a number ({exc})") from None
    if source:
        rows += _latents_file(source)
    if not rows or not rows[0]:
        raise click.UsageError("give latents: a FILE (.npy or JSON), '-' for stdin, or -z values")
    try:
        return np.asarray(rows, dtype=np.float64)
    except (ValueError, TypeError):
        lengths = sorted({len(row) if isinstance(row, list) else 1 for row in rows})
        if len(lengths) > 1:
            raise click.UsageError(f"every latent must have the same number of values, got {lengths}") from None
        raise click.UsageError("latents must be numbers: [[v, v, ...], ...]") from None


LATENTS_JSON = 'JSON latents: [[v, ...], ...], {"latents": [[v, ...], ...]}, or `vaeserve encode --json` output'


def _latents_file(source: str) -> list[Any]:
    """The rows of a latents FILE ('-': stdin)."""
    name = "stdin" if source == "-" else source
    if source.endswith(".npy"):
        return list(np.atleast_2d(np.load(source, allow_pickle=False)).tolist())
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise click.UsageError(f"{name} is not JSON ({exc}); give {LATENTS_JSON}, or a .npy file") from None
    if isinstance(data, dict) and "results" in data:  # `vaeserve encode --json`: z when drawn, else mean
        try:
            data = [result.get("z") or result["mean"] for result in data["results"]]
        except (TypeError, KeyError, AttributeError):
            raise click.UsageError(f'{name}: its results hold no "mean" latents; give {LATENTS_JSON}') from None
    elif isinstance(data, dict):
        if "latents" not in data:
            keys = ", ".join(map(repr, list(data)[:5])) or "none"
            raise click.UsageError(
                f'{name}: a JSON object needs a "latents" field (its keys: {keys}); give {LATENTS_JSON}'
            )
        data = data["latents"]
    if not isinstance(data, list) or not data:
        raise click.UsageError(f"{name} holds no latents; give {LATENTS_JSON}")
    return data if isinstance(data[0], list) else [data]

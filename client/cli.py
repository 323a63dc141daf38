"""The `vaeserve` command line: talk to a server, or serve, train and evaluate here.

    vaeserve health                              is the server up and ready?
    vaeserve models                              what it serves
    vaeserve encode digit.png                    latent means (a table; --json for all of it)
    vaeserve sample -n 16 -o grid.png            16 draws from the prior as one PNG
    vaeserve score imgs/*.png --fail-on-anomaly  anomaly scores; exit 1 if any is an anomaly
    vaeserve interpolate a.png b.png -o path.png 8 images between two digits' posterior means
    vaeserve traverse digit.png -o sweep.png     the most active latent dimensions swept, -3 to 3
    vaeserve serve --repository models           run the server here (python -m app)
    vaeserve train --data mnist --out models/mnist-vae/1

The server is VAESERVE_URL (default http://127.0.0.1:8000), its key VAESERVE_API_KEY.
Exit codes: 0 done; 1 the server or a file said no (one line on stderr), or `score --fail-on-anomaly`
found an anomaly; 2 bad usage, or a command whose extras are not installed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import get_args

import click

from client import output
from client.arguments import A, Codes, Outcome, ask_each, image_files, model_ref, plan_requests, read_latents
from client.batching import Budget
from client.calls import DEFAULT_URL
from client.errors import VAEServeConnectionError, VAEServeError, VAEServeTimeoutError
from client.local import evaluate, serve, train
from client.retry import NO_RETRY, RetryPolicy
from client.sync import VAEClient
from wire.v1 import PathMethod, ScoreName


@dataclass(frozen=True)
class Remote:
    """Where the server is, from the group's options."""

    url: str
    api_key: str | None
    timeout: float
    retries: int

    def client(self, retry: RetryPolicy | None = None) -> VAEClient:
        policy = retry or RetryPolicy(attempts=self.retries + 1)
        return VAEClient(self.url, api_key=self.api_key, timeout=self.timeout, retry=policy)


BAD_FILES = 2  # exit status when some files could not be used; the rest are still answered


def ask_files(paths: Sequence[Path], budget: Callable[[], Budget], ask: Callable[[list[Path]], A]) -> Outcome[A]:
    """Every image file of `paths`, asked in requests within `budget()` (the server's limits, VAEClient.budget).

    Skipped directory entries and the files that fail are said on stderr, one line each;
    the others are answered. A file over the body limit on its own is said before any upload.
    """
    files, skipped = image_files(paths)
    for path, why in skipped:
        click.echo(f"skipped {path}: {why}", err=True)
    requests, too_big = plan_requests(files, budget())
    outcome = ask_each(requests, ask)
    order = {path: i for i, path in enumerate(files)}
    outcome.failed = sorted(too_big + outcome.failed, key=lambda failure: order[failure[0]])
    return outcome


def report_failures(outcome: Outcome[A]) -> int:
    """Each failed file on stderr; BAD_FILES if any failed, else 0."""
    for path, why in outcome.failed:
        click.echo(f"error: {path}: {why}", err=True)
    if outcome.failed:
        click.echo(f"{len(outcome.failed)} of {len(outcome.failed) + len(outcome.done)} files failed", err=True)
    return BAD_FILES if outcome.failed else 0


MODEL = click.option("-m", "--model", "model", metavar="NAME[:VERSION]", help="the server's default when absent")
IMAGES = click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
BATCH = click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1), help="images per request")
SEED = click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="seed of the noise")
JSON = click.option("--json", "as_json", is_flag=True, help="print the server's whole answer as JSON")
K = click.option("-k", "--importance-samples", type=click.IntRange(1), help="K; the calibration's K when absent")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--url", envvar="VAESERVE_URL", default=DEFAULT_URL, show_default=True, help="the server [VAESERVE_URL]")
@click.option("--api-key", envvar="VAESERVE_API_KEY", help="sent as a bearer token [VAESERVE_API_KEY]")
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True), help="seconds")
@click.option(
    "--retries", default=4, show_default=True, type=click.IntRange(0, 20), help="on 503 or a refused connection"
)
@click.pass_context
def cli(ctx: click.Context, url: str, api_key: str | None, timeout: float, retries: int) -> None:
    """Encode, decode, sample and score images with a vaeserve server; serve and train models."""
    ctx.obj = Remote(url, api_key or None, timeout, retries)


@cli.command()
@click.option("--wait", default=0.0, type=click.FloatRange(0), help="seconds to keep asking until it is ready")
@click.pass_obj
def health(remote: Remote, wait: float) -> int:
    """Say whether the server is alive and ready (exit 1 if not)."""
    deadline = time.monotonic() + wait
    with remote.client(NO_RETRY) as vae:
        while True:
            try:
                ready = vae.ready()
                click.echo(f"ready: {', '.join(ready.models)} at {remote.url}")
                return 0
            except VAEServeError as exc:
                if time.monotonic() >= deadline:
                    if exc.status == 503:
                        click.echo(f"not ready: {exc.detail} at {remote.url}", err=True)
                        return 1
                    raise
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


@cli.command()
@click.argument("name", required=False)
@JSON
@click.pass_obj
def models(remote: Remote, name: str | None, as_json: bool) -> None:
    """List the models the server has loaded, or describe one (NAME[:VERSION]) in JSON."""
    with remote.client() as vae:
        if name:
            ref = model_ref(name)
            click.echo(vae.model(ref["model"] or name, ref["version"]).model_dump_json(indent=2))
            return
        answer = vae.models()
    click.echo(answer.model_dump_json(indent=2) if as_json else output.models(answer))


@cli.command()
@IMAGES
@click.option("--sample", is_flag=True, help="also draw z from q(z|x)")
@SEED
@MODEL
@BATCH
@JSON
@click.pass_obj
def encode(
    remote: Remote, paths: tuple[Path, ...], sample: bool, seed: int, model: str | None, batch_size: int, as_json: bool
) -> int:
    """Encode images to the mean (and log-variance) of q(z|x)."""
    with remote.client() as vae:
        ask = partial(vae.encode, sample=sample, seed=seed, **model_ref(model))
        got = ask_files(paths, partial(vae.budget, max_images=batch_size), ask)
    if got.answer is not None:
        answer, files = got.answer, got.done
        click.echo(output.json_with_files(answer, files, got.failed) if as_json else output.encodings(files, answer))
    return report_failures(got)


@cli.command()
@click.argument("source", required=False, metavar="[FILE|-]")
@click.option("-z", "values", multiple=True, metavar="V,V,...", help="one latent; repeat for more")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG to write")
@MODEL
@click.pass_obj
def decode(remote: Remote, source: str | None, values: tuple[str, ...], out: Path, model: str | None) -> None:
    """Decode latents to an image (a grid for several). FILE: .npy, JSON, or `vaeserve encode --json` output."""
    z = read_latents(source, values)
    with remote.client() as vae:
        png = vae.decode_grid(z, **model_ref(model))
    out.write_bytes(png)
    click.echo(f"wrote {out} ({len(z)} image{'s' if len(z) > 1 else ''})")


@cli.command()
@click.option("-n", default=16, show_default=True, type=click.IntRange(1), help="how many samples")
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="PNG grid to write; - for stdout",
)
@SEED
@click.option("-t", "--temperature", default=1.0, show_default=True, type=click.FloatRange(0, 10, min_open=True))
@MODEL
@JSON
@click.pass_obj
def sample(
    remote: Remote, n: int, out: Path | None, seed: int, temperature: float, model: str | None, as_json: bool
) -> None:
    """Draw n images from the prior: a PNG grid (-o), or JSON with each PNG and its latent."""
    _png_or_json(out, as_json, "grid.png")
    ref = model_ref(model)
    with remote.client() as vae:
        if as_json:
            click.echo(vae.sample(n, seed=seed, temperature=temperature, **ref).model_dump_json(indent=2))
            return
        png = vae.sample_grid(n, seed=seed, temperature=temperature, **ref)
    _write_png(out, png, f"{n} samples, seed {seed}, temperature {temperature:g}")


def _png_or_json(out: Path | None, as_json: bool, example: str) -> None:
    if out is None and not as_json:
        raise click.UsageError(f"give -o {example} (or -o - for stdout), or --json")


def _write_png(out: Path | None, png: bytes, what: str) -> None:
    """The PNG to the file `out`, or to stdout for -, with a line saying what was written."""
    assert out is not None
    if str(out) == "-":
        sys.stdout.buffer.write(png)
        return
    out.write_bytes(png)
    click.echo(f"wrote {out} ({what})")


def _codes(paths: Sequence[Path], values: Sequence[str], count: int) -> Codes:
    """`count` image files, or `count` latents from -z: what interpolate and traverse start from."""
    plural = "s" if count > 1 else ""
    if (paths and values) or not (paths or values):
        raise click.UsageError(f"give {count} image file{plural} or {count} -z latent{plural}")
    given = len(paths) if paths else len(values)
    if given != count:
        raise click.UsageError(f"give {count}, not {given}: {'image files' if paths else '-z latents'}")
    return (
        {"images": list(paths), "latents": None} if paths else {"images": None, "latents": read_latents(None, values)}
    )


OUT = click.option(
    "-o", "--out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), help="PNG to write; - for stdout"
)
LATENT = click.option("-z", "values", multiple=True, metavar="V,V,...", help="a latent instead of an image file")


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@LATENT
@OUT
@click.option("--steps", default=8, show_default=True, type=click.IntRange(2), help="images, both ends included")
@click.option("--method", default="slerp", show_default=True, type=click.Choice(get_args(PathMethod)))
@MODEL
@JSON
@click.pass_obj
def interpolate(
    remote: Remote,
    paths: tuple[Path, ...],
    values: tuple[str, ...],
    out: Path | None,
    steps: int,
    method: PathMethod,
    model: str | None,
    as_json: bool,
) -> None:
    """Images along the path between two images' posterior means (or two -z latents): a PNG strip, or JSON."""
    _png_or_json(out, as_json, "path.png")
    codes = _codes(paths, values, 2)
    with remote.client() as vae:
        if as_json:
            answer = vae.interpolate(**codes, steps=steps, method=method, **model_ref(model))
            click.echo(answer.model_dump_json(indent=2))
            return
        png = vae.interpolate_strip(**codes, steps=steps, method=method, **model_ref(model))
    _write_png(out, png, f"{steps} images, {method}")


@cli.command()
@click.argument("path", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@LATENT
@OUT
@click.option("-d", "--dimension", "dimensions", multiple=True, type=click.IntRange(0),
              help="a dimension to sweep; repeat for more; the most active ones when absent")  # fmt: skip
@click.option("--low", default=-3.0, show_default=True, help="first value, prior standard deviations")
@click.option("--high", default=3.0, show_default=True, help="last value, prior standard deviations")
@click.option("--steps", default=7, show_default=True, type=click.IntRange(1), help="values per dimension")
@MODEL
@JSON
@click.pass_obj
def traverse(
    remote: Remote,
    path: Path | None,
    values: tuple[str, ...],
    out: Path | None,
    dimensions: tuple[int, ...],
    low: float,
    high: float,
    steps: int,
    model: str | None,
    as_json: bool,
) -> None:
    """Sweep latent dimensions of an image's posterior mean (or a -z latent): a PNG grid, a row per dimension."""
    _png_or_json(out, as_json, "sweep.png")
    codes = _codes([path] if path else [], values, 1)
    ref = model_ref(model)
    chosen = list(dimensions) or None  # the server's most active ones
    with remote.client() as vae:
        if as_json:
            answer = vae.traverse(codes["images"], latent=codes["latents"], dimensions=chosen, low=low,
                                  high=high, steps=steps, **ref)  # fmt: skip
            click.echo(answer.model_dump_json(indent=2))
            return
        png = vae.traverse_grid(codes["images"], latent=codes["latents"], dimensions=chosen, low=low,
                                high=high, steps=steps, **ref)  # fmt: skip
    _write_png(out, png, f"{len(dimensions) or 'the most active'} dimensions x {steps} values")


@cli.command()
@IMAGES
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="directory for the PNGs",
)
@K
@SEED
@MODEL
@BATCH
@click.pass_obj
def reconstruct(
    remote: Remote,
    paths: tuple[Path, ...],
    out_dir: Path,
    importance_samples: int | None,
    seed: int,
    model: str | None,
    batch_size: int,
) -> int:
    """Reconstruct images from their posterior mean; write one PNG each, print their scores."""
    with remote.client() as vae:
        ref = model_ref(model)
        ask = partial(vae.reconstruct, importance_samples=importance_samples, seed=seed, **ref)
        budget = partial(vae.budget, scored=True, importance_samples=importance_samples, max_images=batch_size, **ref)
        got = ask_files(paths, budget, ask)
    if got.answer is None:
        return report_failures(got)
    answer, files = got.answer, got.done
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (path, png) in enumerate(zip(files, answer.pngs, strict=True)):
        target = out_dir / f"{path.stem}.png"
        if target in written:  # the same name from two folders
            target = out_dir / f"{path.stem}-{i}.png"
        target.write_bytes(png)
        written.append(target)
    click.echo(output.reconstructions(files, written, answer))
    return report_failures(got)


@cli.command()
@IMAGES
@click.option(
    "--score",
    "score_name",
    type=click.Choice(get_args(ScoreName)),
    help="the decision score; the calibrated one when absent",
)
@click.option(
    "--fpr", type=click.FloatRange(0, 1, min_open=True, max_open=True), help="false positive rate for the threshold"
)
@K
@SEED
@MODEL
@BATCH
@JSON
@click.option("--fail-on-anomaly", is_flag=True, help="exit 1 when any image is an anomaly")
@click.pass_obj
def score(
    remote: Remote,
    paths: tuple[Path, ...],
    score_name: ScoreName | None,
    fpr: float | None,
    importance_samples: int | None,
    seed: int,
    model: str | None,
    batch_size: int,
    as_json: bool,
    fail_on_anomaly: bool,
) -> int:
    """Score images for anomalies: score, p-value and decision per image.

    Exit status: 0, or 1 with --fail-on-anomaly when an image is an anomaly, or 2 when some
    files could not be scored (the others still are).
    """
    with remote.client() as vae:
        ref = model_ref(model)
        ask = partial(vae.score, score=score_name, false_positive_rate=fpr, importance_samples=importance_samples,
                      seed=seed, **ref)  # fmt: skip
        budget = partial(vae.budget, scored=True, importance_samples=importance_samples, max_images=batch_size, **ref)
        got = ask_files(paths, budget, ask)
    answer = got.answer
    if answer is not None:
        files = got.done
        click.echo(output.json_with_files(answer, files, got.failed) if as_json else output.scores(files, answer))
    failed = report_failures(got)
    return failed or (1 if fail_on_anomaly and answer is not None and bool(answer.is_anomaly.any()) else 0)


cli.add_command(serve)
cli.add_command(train)
cli.add_command(evaluate)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: errors become one line on stderr and an exit code, never a traceback."""
    try:
        code = cli.main(args=list(argv) if argv is not None else None, prog_name="vaeserve", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return 130
    except VAEServeConnectionError as exc:
        click.echo(f"error: {exc}; is the server running? (--url or VAESERVE_URL)", err=True)
        return 1
    except VAEServeTimeoutError as exc:
        click.echo(f"error: {exc}; it may still be working on it: give a longer --timeout, or ask for less", err=True)
        return 1
    except VAEServeError as exc:
        click.echo(f"error: {_unauthorized(exc, argv) if exc.status == 401 else exc}", err=True)
        return 1
    except (OSError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    return code if isinstance(code, int) else 0


def _unauthorized(exc: VAEServeError, argv: Sequence[str] | None) -> str:
    """A 401 said in the command's terms (its options), not the HTTP headers the server names."""
    args = list(sys.argv[1:] if argv is None else argv)
    given = any(arg == "--api-key" or arg.startswith("--api-key=") for arg in args) or os.environ.get(
        "VAESERVE_API_KEY"
    )
    if given:
        return (
            f"{exc.status} {exc.title}: the key given (--api-key or VAESERVE_API_KEY) is not one of the server's keys"
        )
    return f"{exc.status} {exc.title}: the server needs an API key: give it with --api-key KEY or VAESERVE_API_KEY"


if __name__ == "__main__":
    sys.exit(main())

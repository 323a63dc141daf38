"""The commands that run on this machine: serve, train, evaluate.

Each passes its arguments through to the module's own `main(argv)`, imported only when the
command runs: `vaeserve score` never loads the server, and a serving install without torch
still has a working `vaeserve` (train and evaluate say what to install instead).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import IO, Any

import click

OWN_PACKAGES = {"app", "client", "model", "training", "wire", "bench"}
TRAIN_HINT = "install them with: pip install 'vaeserve[train]'"
PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


class MissingExtraError(click.ClickException):
    """A command that needs a part of vaeserve this installation does not have (exit 2)."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=True)


def _entry_point(module: str, what: str) -> Callable[[list[str]], int]:
    try:
        main: Callable[[list[str]], int] = importlib.import_module(module).main
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if exc.name and module.startswith(exc.name):
            raise MissingExtraError(f"{what} is not available: this installation has no {module}") from None
        if missing and missing not in OWN_PACKAGES:  # a library of the `train` extra (torch, onnx, sklearn...)
            raise MissingExtraError(
                f"{what} needs the training extras, which are not installed (no module {missing}); {TRAIN_HINT}"
            ) from None
        raise
    return main


@click.command(context_settings=PASS_THROUGH, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def serve(args: tuple[str, ...]) -> int:
    """Run the server (python -m app); `vaeserve serve --help` for its options."""
    return _entry_point("app.__main__", "vaeserve serve")(list(args))


@click.command(context_settings=PASS_THROUGH, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train(args: tuple[str, ...]) -> int:
    """Train a VAE and write a bundle (python -m training); needs vaeserve[train]."""
    return _entry_point("training.__main__", "vaeserve train")(list(args))


@click.command(context_settings=PASS_THROUGH, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def evaluate(args: tuple[str, ...]) -> int:
    """Evaluate a bundle's anomaly detection on labelled data; needs vaeserve[train]."""
    return _entry_point("training.evaluate", "vaeserve evaluate")(list(args))

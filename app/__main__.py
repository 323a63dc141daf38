"""Run the service: `python -m app [--host H] [--port P] [--repository DIR] [--default-model NAME]`.

Flags override the VAESERVE_* environment variables of the same name.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import sys
from pathlib import Path
from types import FrameType

import uvicorn
from pydantic import ValidationError

from app import tracing
from app.logs import log_config
from app.main import create_app
from app.serving.registry import ModelRegistry
from app.settings import Settings
from model.errors import BundleError

STARTUP_FAILURE = 3  # uvicorn's own exit status when an app fails to start


def main(argv: list[str] | None = None) -> int:
    _limit_malloc_arenas()
    p = argparse.ArgumentParser(prog="python -m app", description="Serve VAE bundles over HTTP.")
    p.add_argument("--host", help="default 127.0.0.1 (VAESERVE_HOST)")
    p.add_argument("--port", type=int, help="default 8000 (VAESERVE_PORT)")
    p.add_argument(
        "--repository", type=Path, help="model repository <root>/<name>/<version>/ (VAESERVE_MODEL_REPOSITORY)"
    )
    p.add_argument("--default-model", help="name or name:version (VAESERVE_DEFAULT_MODEL)")
    p.add_argument("--workers", type=int, help="server processes, default 1 (VAESERVE_WORKERS)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = p.parse_args(argv)
    overrides = {
        "host": args.host,
        "port": args.port,
        "model_repository": args.repository,
        "default_model": args.default_model,
        "workers": args.workers,
    }
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        for error in exc.errors():
            print(f"error: setting {'.'.join(map(str, error['loc']))}: {error['msg']}", file=sys.stderr)
        return 2
    try:
        tracing.exporter_names()
    except tracing.TracingConfigError as exc:
        print(f"error: tracing: {exc}", file=sys.stderr)
        return 2
    try:  # load before uvicorn starts: a broken bundle is one clear line and exit 3, not a traceback
        registry = ModelRegistry.load(settings)
    except BundleError as exc:
        print(f"error: cannot serve: {exc}", file=sys.stderr)
        return STARTUP_FAILURE
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal; answering it
    # with a clean exit makes a graceful stop exit 0, as process managers expect.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    log_options = {"log_config": log_config(settings.log_format, args.log_level), "access_log": False}
    if settings.workers == 1:
        uvicorn.run(create_app(settings, registry), host=settings.host, port=settings.port, **log_options)  # type: ignore[arg-type]
        return 0
    # Each worker process builds its own app (and loads the models) from the environment, so
    # pass the flags on there; the registry loaded here only proved the repository is sound.
    del registry
    os.environ.update({f"VAESERVE_{k.upper()}": str(v) for k, v in overrides.items() if v is not None})
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        **log_options,  # type: ignore[arg-type]
    )
    return 0


def _limit_malloc_arenas() -> None:
    """Cap glibc's malloc arenas at 2, as MALLOC_ARENA_MAX=2 would (unless that is set).

    glibc gives threads their own arenas and keeps freed memory in each; with ONNX Runtime
    and the batcher threads that kept RSS growing under mixed traffic (≈ 250 MB against
    ≈ 180 MB capped, same throughput: docs/reliability.md). Must run before threads start.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, 2)


_M_ARENA_MAX = -8  # from glibc's malloc.h


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())

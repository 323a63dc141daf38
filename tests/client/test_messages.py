"""Every client and CLI error says what is actually wrong: a slow answer is not an unreachable
server, a URL without a scheme is not a network error, a broken link is not a directory, and so on."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from bench.harness import PORT, serve, without_settings
from client import AsyncVAEClient, VAEClient, VAEServeConnectionError, VAEServeTimeoutError

ROOT = Path(__file__).resolve().parents[2]
KEY = "right-key-0123456789"


def vaeserve(*args: str, stdin: bytes | None = None, **env: str) -> subprocess.CompletedProcess[bytes]:
    """`vaeserve ARGS` as a person runs it, with `env` (VAESERVE_URL...) and nothing else of ours."""
    return subprocess.run([sys.executable, "-m", "client", *args], env=without_settings(PYTHONPATH=str(ROOT), **env),
                          input=stdin, capture_output=True, timeout=60)  # fmt: skip


def last_line(done: subprocess.CompletedProcess[bytes]) -> tuple[int, str]:
    assert b"Traceback" not in done.stderr
    return done.returncode, done.stderr.decode().splitlines()[-1]


@contextmanager
def silent_server() -> Iterator[str]:
    """A server that takes connections (the kernel's backlog) and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"


def test_a_slow_answer_is_a_timeout_not_an_unreachable_server() -> None:
    with silent_server() as url:
        with VAEClient(url, timeout=0.3) as vae, pytest.raises(VAEServeTimeoutError) as caught:
            vae.models()
        assert not isinstance(caught.value, VAEServeConnectionError)
        assert str(caught.value) == f"no answer from {url}: nothing came back within the timeout of 0.3 s"
        assert (caught.value.status, caught.value.type) == (0, "urn:vaeserve:client:timeout")

        async def ask() -> None:
            async with AsyncVAEClient(url, timeout=0.3) as vae:
                await vae.health()

        with pytest.raises(VAEServeTimeoutError):
            asyncio.run(ask())
        assert last_line(vaeserve("--timeout", "0.3", "models", VAESERVE_URL=url)) == (
            1, f"error: no answer from {url}: nothing came back within the timeout of 0.3 s; it may still be "
               "working on it: give a longer --timeout, or ask for less",
        )  # fmt: skip


def test_a_url_without_a_scheme_is_said_so() -> None:
    for url in ("127.0.0.1:8000", "localhost:8000"):
        with pytest.raises(ValueError, match=f"did you mean http://{url}"):
            VAEClient(url)
        assert last_line(vaeserve("health", VAESERVE_URL=url)) == (
            1, f"error: the server URL '{url}' must start with http:// or https:// and name a host; "
               f"did you mean http://{url}?",
        )  # fmt: skip
    with pytest.raises(ValueError, match="must start with http:// or https://"):
        VAEClient("ftp://example.org")


def test_a_broken_link_in_a_folder_is_named(live_url: str, digit_files: list[Path]) -> None:
    folder = digit_files[0].parent
    (folder / "broken.png").symlink_to(folder / "gone.png")
    (folder / "sub").mkdir()
    done = vaeserve("encode", str(folder), VAESERVE_URL=live_url)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr.decode().splitlines() == [
        f"skipped {folder / 'broken.png'}: a broken symbolic link (to {folder / 'gone.png'}, which does not exist)",
        f"skipped {folder / 'sub'}: a directory (folders are not searched recursively)",
    ]


def test_latents_are_checked_with_a_clear_message(live_url: str) -> None:
    with VAEClient(live_url) as vae, pytest.raises(ValueError) as caught:
        vae.decode(np.array([[0.0, 1.0, np.inf, np.nan]]))
    assert (
        str(caught.value) == "latents must be finite numbers: latent 0 holds inf at index 2 (2 values NaN or infinite)"
    )
    cases = [
        (["decode", "-z", "0,0,0,nan", "-o", "x.png"], None,
         (1, "error: latents must be finite numbers: latent 0 holds nan at index 3 (1 value NaN or infinite)")),
        (["decode", "-", "-o", "x.png"], b"garbage\n",
         (2, "Error: stdin is not JSON (Expecting value: line 1 column 1 (char 0)); give JSON latents: [[v, ...], "
             '...], {"latents": [[v, ...], ...]}, or `vaeserve encode --json` output, or a .npy file')),
        (["decode", "-", "-o", "x.png"], b'{"not": "latents"}',
         (2, "Error: stdin: a JSON object needs a \"latents\" field (its keys: 'not'); give JSON latents: [[v, ...], "
             '...], {"latents": [[v, ...], ...]}, or `vaeserve encode --json` output')),
        (["decode", "-", "-o", "x.png"], b'{"latents": []}',
         (2, "Error: stdin holds no latents; give JSON latents: [[v, ...], ...], {\"latents\": [[v, ...], ...]}, "
             "or `vaeserve encode --json` output")),
        (["decode", "-", "-o", "x.png"], b'[[0, 1], [0, 1, 2]]',
         (2, "Error: every latent must have the same number of values, got [2, 3]")),
        (["decode", "-z", "0,x", "-o", "x.png"], None,
         (2, "Error: -z 0,x: every value must be a number (could not convert string to float: 'x')")),
    ]  # fmt: skip
    for args, stdin, expected in cases:
        assert last_line(vaeserve(*args, stdin=stdin, VAESERVE_URL=live_url)) == expected, args


@pytest.fixture(scope="module")
def keyed_url(repository: Path) -> Iterator[str]:
    argv = [sys.executable, "-m", "app", "--repository", str(repository), "--port", PORT, "--default-model", "digits:1",
            "--log-level", "warning"]  # fmt: skip
    with serve(argv, env=without_settings(VAESERVE_API_KEYS=KEY), ready_path="/healthz") as live:
        yield live.url


def test_a_401_names_the_options_that_give_the_key(keyed_url: str) -> None:
    needed = "error: 401 Unauthorized: the server needs an API key: give it with --api-key KEY or VAESERVE_API_KEY"
    wrong = "error: 401 Unauthorized: the key given (--api-key or VAESERVE_API_KEY) is not one of the server's keys"
    assert last_line(vaeserve("models", VAESERVE_URL=keyed_url)) == (1, needed)
    assert last_line(vaeserve("--api-key", "wrong-key-0123456789", "models", VAESERVE_URL=keyed_url)) == (1, wrong)
    assert last_line(vaeserve("models", VAESERVE_URL=keyed_url, VAESERVE_API_KEY="wrong-key-0123456789")) == (1, wrong)
    assert vaeserve("models", VAESERVE_URL=keyed_url, VAESERVE_API_KEY=KEY).returncode == 0

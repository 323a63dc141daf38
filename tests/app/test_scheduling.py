"""A deadline bounds the work, not just the wait: over the wire, on a real uvicorn.

A heavy score (tests/cases/heavy6.npy at importance_samples=5000: 6 x 5000 decoder passes
in 79 pieces of 64 samples) is in flight; a light one sent after it is answered first,
while the heavy one is still unanswered. When the heavy one's client goes, or its deadline
passes, its remaining pieces are never computed: the server's count of score calls
(vaeserve_batch_size_count) stops well short of 79. So it does, with batching off, and for a
request of many images at a modest K, which is cut into pieces of images as well.
"""

from __future__ import annotations

import io
import re
import select
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest

from bench import harness
from model.runtime import PIECE_DECODES, sample_chunks, score_pieces

CASES = Path(__file__).resolve().parents[1] / "cases"
HEAVY_PIECES = len(sample_chunks(5000))  # 79
NPY = {"content-type": "application/x-npy"}


@contextmanager
def shipped_server(**settings: str) -> Iterator[str]:
    env = harness.without_settings(VAESERVE_MAX_TOTAL_IMPORTANCE_SAMPLES="30000", VAESERVE_LOG_FORMAT="text",
                                   **settings)  # fmt: skip
    argv = [sys.executable, "-m", "app", "--port", harness.PORT, "--log-level", "warning"]
    with harness.serve(argv, env=env) as live:
        yield live.url


def send_heavy(url: str) -> socket.socket:
    """POST the heavy score on a raw socket, so the test decides when its client goes."""
    body = (CASES / "heavy6.npy").read_bytes()
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /v1/score?importance_samples=5000 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)  # fmt: skip
    return sock


def score_calls(client: httpx.Client, what: str = "count") -> int:
    """Score calls the server ran ("count"), or the images they held in all ("sum")."""
    text = client.get("/metrics").text
    found = re.search(rf'^vaeserve_batch_size_{what}\{{model="mnist-vae:1",operation="score"\}} (\S+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


def wait_for(condition, limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "the server never got there"
        time.sleep(0.2)


def settled(client: httpx.Client, limit_s: float = 180.0) -> int:
    """The score-call count once it stops moving: two reads a second apart agree."""
    deadline, previous = time.monotonic() + limit_s, score_calls(client)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = score_calls(client)
        if now == previous:
            return now
        previous = now
    raise AssertionError("the server never stopped scoring")


def test_a_light_request_is_answered_while_a_heavy_one_runs_and_the_heavy_one_stops_with_its_client() -> None:
    with shipped_server() as url, httpx.Client(base_url=url, timeout=60) as client:
        heavy = send_heavy(url)
        try:
            wait_for(lambda: score_calls(client) >= 1)  # the heavy one's first piece has run
            light = client.post("/v1/score", content=(CASES / "single.npy").read_bytes(), headers=NPY)
            assert light.status_code == 200 and len(light.json()["results"]) == 1
            unanswered = not select.select([heavy], [], [], 0)[0]  # not a byte back yet
            assert unanswered, "the heavy request was answered before the light one"
        finally:
            heavy.close()  # the client goes
        assert settled(client) < HEAVY_PIECES  # its remaining pieces were never computed
        assert client.post("/v1/score", content=(CASES / "single.npy").read_bytes(), headers=NPY).status_code == 200


@pytest.mark.parametrize("batching", ["true", "false"])
def test_past_its_deadline_a_request_gets_504_and_its_work_stops(batching: str) -> None:
    with shipped_server(VAESERVE_REQUEST_TIMEOUT_S="3", VAESERVE_BATCHING=batching) as url, \
            httpx.Client(base_url=url, timeout=60) as client:  # fmt: skip
        r = client.post("/v1/score?importance_samples=5000", content=(CASES / "heavy6.npy").read_bytes(), headers=NPY)
        assert r.status_code == 504 and r.json()["detail"] == "the request took longer than 3 s"
        assert settled(client) < HEAVY_PIECES


def test_a_wide_request_is_cut_into_pieces_of_images_too_and_stops_at_its_deadline() -> None:
    """200 images at K = 128: 25,600 decoder passes in pieces of at most PIECE_DECODES, not 2 pieces of
    200 images; past the deadline the pieces not yet run are never run."""
    wide = np.concatenate([np.load(CASES / "heavy6.npy")] * 34)[:200]
    body = io.BytesIO()
    np.save(body, wide)
    pieces = sum(-(-len(wide) // images) for _, _, images in score_pieces(128))
    assert pieces == 50
    with shipped_server(VAESERVE_REQUEST_TIMEOUT_S="3") as url, httpx.Client(base_url=url, timeout=60) as client:
        r = client.post("/v1/score?importance_samples=128", content=body.getvalue(), headers=NPY)
        assert r.status_code == 504 and r.json()["detail"] == "the request took longer than 3 s"
        wait_for(lambda: score_calls(client) >= 1)  # the piece running at the deadline is finished
        calls = settled(client)
        assert calls < pieces
        assert score_calls(client, "sum") <= calls * PIECE_DECODES // 64  # at most 8 images a call, not 64

"""Uploads over the wire, on a real uvicorn: large images decode off the event loop, a
deadline abandons the images not yet decoded, a body that does not arrive in time is a 408,
and a client that goes mid-upload is a 499, never a 500.

No assertion here is timed: the event loop's freedom is shown by /healthz answering while a
heavy upload is still unanswered, and abandoned work by the server's own CPU time, compared
with what one image costs in the same run.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import socket
import struct
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2 as httpx
import pytest

from bench import harness

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads a process's CPU time in /proc")


@pytest.fixture(scope="module")
def heavy_png() -> bytes:
    """A 4096 x 4096 16-bit RGBA PNG, all black: 130 KB on the wire, about a second of decoding,
    within every default limit (grader A's max_rgba16.png)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    side = 4096
    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + 8 * side)  # filter byte, then 4 samples of 2 bytes per pixel
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@contextmanager
def server(**settings: str) -> Iterator[harness.Live]:
    env = harness.without_settings(VAESERVE_LOG_FORMAT="text", VAESERVE_DRIFT_INTERVAL_S="0", **settings)
    argv = [sys.executable, "-m", "app", "--port", harness.PORT, "--log-level", "warning"]
    with harness.serve(argv, env=env) as live:
        yield live


def multipart(images: list[bytes]) -> tuple[bytes, str]:
    parts = [b'--b\r\nContent-Disposition: form-data; name="f"; filename="i.png"\r\nContent-Type: image/png\r\n\r\n'
             + image + b"\r\n" for image in images]  # fmt: skip
    return b"".join(parts) + b"--b--\r\n", "multipart/form-data; boundary=b"


def as_json(images: list[bytes]) -> tuple[bytes, str]:
    return json.dumps({"images": [base64.b64encode(i).decode() for i in images]}).encode(), "application/json"


def send(url: str, head: str, body: bytes = b"") -> socket.socket:
    """A request on a raw socket, so the test decides when to read its answer (or to go)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(head.encode() + b"\r\n" + body)
    return sock


def post(path: str, body: bytes, content_type: str, length: int | None = None) -> str:
    size = len(body) if length is None else length
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {size}\r\n"


def answer(sock: socket.socket, limit_s: float = 120.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the answer on `sock` (Content-Length framed)."""
    sock.settimeout(limit_s)
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, f"the connection closed before an answer: {data!r}"
        data += more
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        more = sock.recv(65536)
        assert more, "the connection closed mid-answer"
        body += more
    return int(lines[0].split()[1]), headers, body


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid`, all its threads (proc(5): fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settled_cpu(pid: int, limit_s: float = 180.0) -> float:
    """The process's CPU time once it stops growing: two reads a second apart within 50 ms."""
    deadline, previous = time.monotonic() + limit_s, cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = cpu_seconds(pid)
        if now - previous < 0.05:
            return now
        previous = now
    raise AssertionError("the server never went idle")


@pytest.mark.parametrize("form", [multipart, as_json])
def test_health_answers_while_large_images_decode(heavy_png: bytes, form) -> None:
    """[2] three 4096 x 4096 16-bit images take seconds to decode; /healthz answers meanwhile,
    each time in a small part of the upload's time (on the event loop, one /healthz would wait
    for all of the decoding: most of it)."""
    body, content_type = form([heavy_png] * 3)
    with server() as live, httpx.Client(base_url=live.url, timeout=60) as client:
        waits = []
        started = time.perf_counter()
        with send(live.url, post("/v1/encode", body, content_type), body) as heavy:
            for _ in range(10_000):  # bounded: the heavy one ends within seconds
                asked = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                waits.append(time.perf_counter() - asked)
                if select.select([heavy], [], [], 0.02)[0]:
                    break
            status, _, text = answer(heavy)
        upload = time.perf_counter() - started
        assert status == 200 and len(json.loads(text)["results"]) == 3, text
        assert len(waits) >= 3 and max(waits) < upload / 5, (max(waits), upload, len(waits))


def test_past_its_deadline_the_images_not_yet_decoded_are_abandoned(heavy_png: bytes) -> None:
    """[3] 16 heavy images past a 2 s deadline: 504, and the server stops decoding them; its CPU
    time for them is a few images' worth, not sixteen (one image's cost measured in the same run)."""
    with server(VAESERVE_REQUEST_TIMEOUT_S="2") as live:
        before = settled_cpu(live.pid)
        body, content_type = multipart([heavy_png])
        with send(live.url, post("/v1/encode", body, content_type), body) as sock:
            answer(sock)  # 200, or 504 on a loaded machine: its cost is one image either way
        one = settled_cpu(live.pid) - before
        body, content_type = multipart([heavy_png] * 16)
        with send(live.url, post("/v1/encode", body, content_type), body) as sock:
            status, _, text = answer(sock)
        assert status == 504 and json.loads(text)["detail"] == "the request took longer than 2 s", text
        many = settled_cpu(live.pid) - before - one
        assert many < 8 * one, (many, one)  # all sixteen decoded would be 16 x one


def test_a_body_that_does_not_arrive_by_the_deadline_is_a_408(heavy_png: bytes) -> None:
    """[21] a client dribbling its body gets 408 Request Timeout at the deadline, its connection
    closed; the server answers others as before."""
    with server(VAESERVE_REQUEST_TIMEOUT_S="1") as live, httpx.Client(base_url=live.url, timeout=60) as client:
        for dribble in (True, False):  # a byte every 0.2 s; or the headers, then nothing
            with send(live.url, post("/v1/encode", b"", "image/png", length=1000)) as slow:
                for _ in range(50):  # 10 s at most
                    if select.select([slow], [], [], 0.2)[0]:
                        break
                    if dribble:
                        slow.send(b"x")
                status, headers, text = answer(slow)
                slow.settimeout(30)
                closed = slow.recv(1) == b""
            assert status == 408, text
            assert json.loads(text) == {
                "type": "urn:vaeserve:problem:request-timeout", "title": "Request timeout", "status": 408,
                "detail": "the request body did not arrive within 1 s (VAESERVE_REQUEST_TIMEOUT_S)",
            }  # fmt: skip
            assert headers["connection"] == "close" and closed  # closed by the server
        digit = (harness.ROOT / "tests" / "cases" / "digit.png").read_bytes()
        assert client.post("/v1/encode", content=digit, headers={"content-type": "image/png"}).status_code == 200


def test_a_client_gone_mid_upload_is_a_499_not_a_500() -> None:
    """[19] Content-Length 5000, 1000 bytes sent, then the client shuts its side."""
    with server() as live, httpx.Client(base_url=live.url, timeout=60) as client:
        with send(live.url, post("/v1/encode", b"", "image/png", length=5000), b"\x89PNG" + b"x" * 996) as gone:
            gone.shutdown(socket.SHUT_WR)
            gone.settimeout(30)
            while gone.recv(65536):  # until the server closes
                pass
        metrics = client.get("/metrics").text
        statuses = re.findall(r'^vaeserve_requests_total\{.*route="/v1/encode".*status="(\d+)"\} (\S+)$', metrics, re.M)
        assert statuses == [("499", "1.0")], statuses

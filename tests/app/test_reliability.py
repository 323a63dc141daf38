"""Under load, over the wire: a bounded soak, reload while serving, SIGTERM while serving."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import httpx2 as httpx

from bench.soak import Call, digit_png, drive, mixed_calls, rss_bytes, server

KEY = "reload-key-0123456789"


def test_soak_mixed_traffic_loses_nothing(repository: Path) -> None:
    with server(repository) as (url, proc):
        calls = mixed_calls(latent_dim=4)
        asyncio.run(drive(url, calls, 2.0, 32))  # warm-up
        before = rss_bytes(proc.pid)
        result = asyncio.run(drive(url, calls, 12.0, 32))
        after = rss_bytes(proc.pid)
    assert result.sent == result.answered > 500 and result.lost == 0, result.errors
    assert result.server_errors == result.valid_not_ok == result.invalid_not_4xx == 0, result.errors
    assert result.by_class["2xx"] > 0 and result.by_class["4xx"] > 0
    assert after < before * 1.10


def test_reload_under_load_fails_no_request(repository: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(repository, repo)
    valid = [c for c in mixed_calls(latent_dim=4, model="digits") if c.valid]
    with server(repo, {"VAESERVE_API_KEYS": KEY}) as (url, proc):
        outcome = {}
        load = threading.Thread(
            target=lambda: outcome.update(r=asyncio.run(drive(url, valid, 6.0, 16, {"X-API-Key": KEY})))
        )
        load.start()
        reloads = []
        for i in range(3):
            time.sleep(1.0)
            if i == 1:  # drop version 2 mid-load: requests for "digits" move to version 1
                shutil.rmtree(repo / "digits" / "2")
            reloads.append(httpx.post(f"{url}/v1/admin/reload", headers={"X-API-Key": KEY}, timeout=30).status_code)
        proc.send_signal(signal.SIGHUP)  # the other way in
        load.join()
        models = httpx.get(f"{url}/readyz").json()["models"]
    result = outcome["r"]
    assert reloads == [200, 200, 200]
    assert models == ["digits:1", "other:1"]
    assert result.answered == result.sent > 100 and result.lost == 0, result.errors
    assert result.valid_not_ok == result.server_errors == 0, result.errors


def test_sigterm_drains_in_flight_requests_and_exits_0(repository: Path) -> None:
    slow = Call(
        "POST", "/v1/score?importance_samples=1000", True, content=digit_png(), headers={"content-type": "image/png"}
    )

    async def scenario(url: str, proc) -> tuple[list[int], int, bool]:
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:
            tasks = [
                asyncio.ensure_future(client.post(slow.path, content=slow.content, headers=slow.headers))
                for _ in range(12)
            ]
            await asyncio.sleep(0.3)  # all sent; most still being computed
            in_flight = sum(not t.done() for t in tasks)
            proc.send_signal(signal.SIGTERM)
            answers = await asyncio.gather(*tasks, return_exceptions=True)
            try:
                await client.get("/healthz")
                refused = False
            except httpx.TransportError:
                refused = True
        codes = [a.status_code if isinstance(a, httpx.Response) else repr(a) for a in answers]
        return codes, in_flight, refused

    # A deadline far away: on a loaded machine the work may take longer than the default 30 s,
    # and a 504 would say nothing about draining.
    with server(repository, {"VAESERVE_REQUEST_TIMEOUT_S": "300"}) as (url, proc):
        codes, in_flight, refused = asyncio.run(scenario(url, proc))
        exit_code = proc.wait(timeout=300)
    assert in_flight > 0  # SIGTERM did arrive while requests were in flight
    assert codes == [200] * 12  # none was cut off
    assert exit_code == 0 and refused  # then it exited cleanly and stopped accepting


def test_limits_and_keys_over_the_wire(repository: Path, digit_pngs) -> None:
    import numpy as np

    from tests.helpers import png_bytes

    env = {
        "VAESERVE_API_KEYS": KEY,
        "VAESERVE_MAX_BODY_BYTES": "4096",
        "VAESERVE_MAX_IMAGES_PER_REQUEST": "2",
        "VAESERVE_MAX_PIXELS_PER_IMAGE": "2000",
        "VAESERVE_MAX_SAMPLES": "5",
        "VAESERVE_MAX_IMPORTANCE_SAMPLES": "50",
    }
    png, auth = {"content-type": "image/png"}, {"Authorization": f"Bearer {KEY}"}
    with server(repository, env) as (url, _), httpx.Client(base_url=url, timeout=30) as c:
        r = c.get("/v1/models")
        assert (r.status_code, r.headers["www-authenticate"]) == (401, 'Bearer realm="vaeserve"')
        assert (
            c.get("/v1/models", headers={"X-API-Key": "nope" * 5}).json()["detail"]
            == "the API key is not valid (the server's keys are its VAESERVE_API_KEYS)"
        )
        assert c.get("/v1/models", headers=auth).status_code == 200
        assert c.get("/healthz").status_code == c.get("/readyz").status_code == 200

        def detail(r: httpx.Response, status: int) -> str:
            assert r.status_code == status, r.text
            return r.json()["detail"]

        assert (
            detail(c.post("/v1/encode", content=b"x" * 5000, headers={**png, **auth}), 413)
            == "the body is over the limit of 4096 bytes (VAESERVE_MAX_BODY_BYTES)"
        )
        three = [("f", ("a.png", digit_pngs[0], "image/png"))] * 3
        assert (
            detail(c.post("/v1/encode", files=three, headers=auth), 413)
            == "3 images is over the limit of 2 per request (VAESERVE_MAX_IMAGES_PER_REQUEST)"
        )
        big = png_bytes(np.zeros((50, 50), np.uint8))
        assert (
            detail(c.post("/v1/encode", content=big, headers={**png, **auth}), 413)
            == "image 0: 50x50 is 2500 pixels, over the limit of 2000 (VAESERVE_MAX_PIXELS_PER_IMAGE)"
        )
        assert (
            detail(c.get("/v1/samples?n=6", headers=auth), 422)
            == "n must be between 1 and 5 (VAESERVE_MAX_SAMPLES), got 6"
        )
        assert detail(
            c.post("/v1/score?importance_samples=51", content=digit_pngs[0], headers={**png, **auth}), 422
        ) == ("importance_samples must be between 1 and 50 (VAESERVE_MAX_IMPORTANCE_SAMPLES), got 51")
        assert (
            detail(c.post("/v1/decode", json={"latents": [[0.0] * 5]}, headers=auth), 422)
            == "latent 0 has 5 values, the model takes 4"
        )


def test_the_deadline_over_the_wire(repository: Path, digit_pngs) -> None:
    with server(repository, {"VAESERVE_REQUEST_TIMEOUT_S": "0.01"}) as (url, _):
        # Headers and body in one write, so the whole body is there before the 10 ms start:
        # a body still arriving at the deadline is a 408, not this test's 504.
        parts = b"".join(b'--b\r\nContent-Disposition: form-data; name="f"; filename="a.png"\r\n'
                         b"Content-Type: image/png\r\n\r\n" + digit_pngs[0] + b"\r\n" for _ in range(3))  # fmt: skip
        body = parts + b"--b--\r\n"  # 3 x 5000 = 15,000 decoder rows: far over 10 ms
        head = ("POST /v1/score?importance_samples=5000 HTTP/1.1\r\nHost: x\r\nX-Request-ID: slow-1\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\nConnection: close\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(head.encode() + body)
            answer = b"".join(iter(lambda: sock.recv(65536), b""))  # until the server closes
        status_line, rest = answer.split(b"\r\n", 1)
        headers, text = rest.split(b"\r\n\r\n", 1)
        assert status_line.split()[1] == b"504" and json.loads(text)["detail"] == "the request took longer than 0.01 s"
        assert b"\r\nx-request-id: slow-1" in b"\r\n" + headers.lower()
        assert httpx.get(f"{url}/healthz").status_code == 200

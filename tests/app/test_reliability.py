"""Under load, over the wire: a bounded soak, reload while serving, SIGTERM while serving."""

from __future__ import annotations

import asyncio
import shutil
import signal
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
        "POST", "/v1/score?importance_samples=3000", True, content=digit_png(), headers={"content-type": "image/png"}
    )

    async def scenario(url: str, proc) -> tuple[list[int], int, bool]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            tasks = [
                asyncio.ensure_future(client.post(slow.path, content=slow.content, headers=slow.headers))
                for _ in range(24)
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

    with server(repository) as (url, proc):
        codes, in_flight, refused = asyncio.run(scenario(url, proc))
        exit_code = proc.wait(timeout=60)
    assert in_flight > 0  # SIGTERM did arrive while requests were in flight
    assert codes == [200] * 24  # none was cut off
    assert exit_code == 0 and refused  # then it exited cleanly and stopped accepting

"""Keys, limits, request ids, logs, overload, deadlines and reload, through the real app."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.security import key_is_valid
from app.main import create_app
from app.settings import Settings
from tests.app.api.test_v1 import assert_problem
from tests.helpers import png_bytes

KEY, OTHER_KEY = "k" * 24, "s3cret-s3cret-s3cret"
PNG = {"content-type": "image/png"}


@pytest.fixture(scope="module")
def secured(repository: Path):
    settings = Settings(model_repository=repository, default_model="digits:1", api_keys=[KEY, OTHER_KEY])
    with TestClient(create_app(settings)) as client:
        yield client


def test_keys_as_bearer_or_x_api_key(secured: TestClient, digit_pngs) -> None:
    for headers in (
        {"Authorization": f"Bearer {KEY}"},
        {"X-API-Key": OTHER_KEY},
        {"authorization": f"bearer {OTHER_KEY}"},
    ):
        assert secured.post("/v1/encode", content=digit_pngs[0], headers={**PNG, **headers}).status_code == 200
        assert secured.get("/v1/models", headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>"),
        ({"Authorization": "Bearer "}, "an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>"),
        (
            {"Authorization": "Basic " + KEY},
            "an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>",
        ),
        (
            {"Authorization": "Bearer wrong-key-wrong-key"},
            "the API key is not valid (the server's keys are its VAESERVE_API_KEYS)",
        ),
        ({"X-API-Key": KEY[:-1]}, "the API key is not valid (the server's keys are its VAESERVE_API_KEYS)"),
    ],
)
def test_missing_or_wrong_key_is_401_with_a_challenge(secured: TestClient, headers, detail: str) -> None:
    for r in (secured.get("/v1/samples", headers=headers), secured.post("/v1/decode", json={}, headers=headers)):
        assert_problem(r, 401, "Unauthorized", detail)
        assert r.headers["www-authenticate"] == 'Bearer realm="vaeserve"'


def test_health_stays_open(secured: TestClient) -> None:
    assert secured.get("/healthz").status_code == 200 and secured.get("/readyz").status_code == 200


def test_keys_compare_in_constant_time_over_all_keys() -> None:
    assert key_is_valid(KEY, [OTHER_KEY, KEY]) and not key_is_valid(KEY + "x", [KEY])
    with pytest.raises(ValueError, match="at least 16 characters"):
        Settings(api_keys=["short"])


def test_keys_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("VAESERVE_API_KEYS", f"{KEY}, {OTHER_KEY}")
    assert Settings().api_keys == [KEY, OTHER_KEY]
    monkeypatch.setenv("VAESERVE_API_KEYS", json.dumps([KEY]))
    assert Settings().api_keys == [KEY]


def test_request_ids_are_kept_or_made(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"]
    assert len(made) == 32 and int(made, 16) >= 0
    assert client.get("/v1/nothing").headers["x-request-id"] != made


def test_access_log_has_the_request_id_and_never_the_payload_or_key(secured: TestClient, digit_pngs, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="app.access"):
        secured.post(
            "/v1/encode?seed=1", content=digit_pngs[0], headers={**PNG, "X-API-Key": KEY, "X-Request-ID": "r-1"}
        )
    (record,) = [r for r in caplog.records if getattr(r, "request_id", None) == "r-1"]
    assert (record.method, record.path, record.status) == ("POST", "/v1/encode", 200)
    assert record.duration_ms > 0
    # the text format prints only the message: it says the duration and the request id too
    assert record.getMessage() == f"POST /v1/encode 200 {record.duration_ms:.1f} ms r-1"
    text = json.dumps(record.__dict__, default=str)
    assert KEY not in text and "seed=1" not in text and "iVBOR" not in text


def test_json_log_lines_are_written_in_bulk_within_the_flush_interval(capsys) -> None:
    import logging.config
    import time

    from app.logs import FLUSH_S, log_config

    logging.config.dictConfig(log_config("json", "info"))
    try:
        logging.getLogger("app.access").info("GET /x 200", extra={"request_id": "r-9", "status": 200})
        written, deadline = "", time.monotonic() + 10 * FLUSH_S
        while "r-9" not in written and time.monotonic() < deadline:  # the flusher thread writes it
            time.sleep(FLUSH_S / 10)
            written += capsys.readouterr().err
        parsed = json.loads(written.strip().splitlines()[-1])
        assert parsed["request_id"] == "r-9" and parsed["status"] == 200 and parsed["level"] == "INFO"

        # Any line but an access line is written at once, after every line logged before it
        # (uvicorn's shutdown lines so carry a dying worker's access lines out); what is left
        # is written at close.
        for logger, level in (("app", logging.WARNING), ("uvicorn.error", logging.INFO)):
            logging.getLogger("app.access").info("first")
            logging.getLogger(logger).log(level, "second")
            messages = [json.loads(line)["message"] for line in capsys.readouterr().err.strip().splitlines()]
            assert messages[-2:] == ["first", "second"]
        logging.getLogger("app.access").info("last")
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False, "root": {"handlers": []}})
    assert json.loads(capsys.readouterr().err.strip().splitlines()[-1])["message"] == "last"


def test_held_back_lines_are_written_whole_in_writes_a_pipe_keeps_atomic() -> None:
    import select

    from app.logs import _chunks

    lines = [f'{{"n": {i}, "pad": "{"é" * (i % 50)}{"x" * 150}"}}\n' for i in range(400)] + ["y" * 10_000 + "\n"]
    chunks = _chunks(lines)
    assert "".join(chunks) == "".join(lines)  # nothing lost, nothing reordered
    assert all(chunk.endswith("\n") for chunk in chunks)  # whole lines only
    assert all(len(c.encode()) <= select.PIPE_BUF for c in chunks[:-1]) and chunks[-1] == lines[-1]
    assert len(chunks) < len(lines) / 10  # still few writes


def test_log_format_auto_is_text_on_a_terminal_and_json_otherwise(monkeypatch) -> None:
    import sys

    from app.logs import log_config

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert log_config("auto", "info")["formatters"]["default"] == log_config("text", "info")["formatters"]["default"]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert log_config("auto", "info")["formatters"]["default"] == log_config("json", "info")["formatters"]["default"]


def test_cors_is_off_by_default_and_configurable(repository: Path, client: TestClient) -> None:
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    assert (
        "access-control-allow-origin" not in client.get("/healthz", headers={"Origin": "https://example.org"}).headers
    )
    settings = Settings(model_repository=repository, cors_origins=["https://example.org"])
    with TestClient(create_app(settings)) as cors:
        r = cors.options("/v1/encode", headers=preflight)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://example.org"


def test_limits(repository: Path, digit_pngs) -> None:
    settings = Settings(
        model_repository=repository, max_body_bytes=2048, max_pixels_per_image=1000, max_importance_samples=10
    )
    with TestClient(create_app(settings)) as c:
        assert_problem(
            c.post("/v1/encode", content=b"x" * 2049, headers=PNG),
            413,
            "Payload too large",
            "the body is over the limit of 2048 bytes (VAESERVE_MAX_BODY_BYTES)",
        )
        big = png_bytes(np.zeros((40, 40), np.uint8))
        assert_problem(
            c.post("/v1/encode", content=big, headers=PNG),
            413,
            "Image too large",
            "image 0: 40x40 is 1600 pixels, over the limit of 1000 (VAESERVE_MAX_PIXELS_PER_IMAGE)",
        )
        r = c.post("/v1/score?importance_samples=11", content=digit_pngs[0], headers=PNG)
        assert (
            r.json()["detail"]
            == "importance_samples must be between 1 and 10 (VAESERVE_MAX_IMPORTANCE_SAMPLES), got 11"
        )

        def chunks():
            for _ in range(10):
                yield b"y" * 512

        # A chunked body (no Content-Length) is cut off as soon as it passes the limit.
        assert c.post("/v1/encode", content=chunks(), headers=PNG).status_code == 413


def test_overload_answers_503_at_once(repository: Path, digit_pngs) -> None:
    settings = Settings(model_repository=repository, max_concurrent_requests=1, batch_max_delay_us=300_000)
    with TestClient(create_app(settings)) as c:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(3) as pool:
            slow = [pool.submit(c.post, "/v1/encode", content=digit_pngs[0], headers=PNG) for _ in range(3)]
            codes = sorted(f.result().status_code for f in slow)
        refused = [f.result() for f in slow if f.result().status_code == 503]
        assert codes.count(200) >= 1 and codes.count(503) >= 1, codes
        assert refused[0].headers["retry-after"] == "1"
        assert refused[0].json()["detail"] == "the server is overloaded; retry later"
        assert c.get("/healthz").status_code == 200


def test_deadline_answers_504(repository: Path, digit_pngs, monkeypatch) -> None:
    settings = Settings(model_repository=repository, request_timeout_s=0.2, batching=False)
    with TestClient(create_app(settings)) as c:
        model = c.app.state.registry.default

        async def stuck(*args, **kwargs):
            await asyncio.sleep(5)

        monkeypatch.setattr(model, "encode", stuck)
        started = time.monotonic()
        r = c.post("/v1/encode", content=digit_pngs[0], headers=PNG)
        assert time.monotonic() - started < 3
        assert_problem(r, 504, "Gateway timeout", "the request took longer than 0.2 s")


def test_reload_swaps_models_and_refuses_a_bad_bundle(repository: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(repository, repo)
    auth = {"X-API-Key": KEY}
    with TestClient(create_app(Settings(model_repository=repo, api_keys=[KEY]))) as c:
        assert c.post("/v1/admin/reload").status_code == 401
        shutil.rmtree(repo / "other")
        r = c.post("/v1/admin/reload", headers=auth)
        assert r.json() == {"status": "reloaded", "models": ["digits:1", "digits:2"]}
        assert c.get("/v1/models/other", headers=auth).status_code == 404
        (repo / "digits" / "2" / "decoder.onnx").write_bytes(b"tampered")
        r = c.post("/v1/admin/reload", headers=auth)
        assert_problem(r, 409, "Reload refused",
                       f"the old models keep serving: {repo / 'digits' / '2' / 'decoder.onnx'}: sha256 does not match the manifest")  # fmt: skip
        assert c.get("/readyz").json()["models"] == ["digits:1", "digits:2"]
        assert c.get("/v1/samples?model=digits&version=2", headers=auth).status_code == 200


def test_reload_is_off_without_keys(client: TestClient) -> None:
    assert_problem(
        client.post("/v1/admin/reload"), 403, "Forbidden", "the admin API is off: it needs VAESERVE_API_KEYS"
    )


def test_a_bug_is_a_500_problem_without_a_trace(repository: Path, digit_pngs, monkeypatch, caplog) -> None:
    with TestClient(create_app(Settings(model_repository=repository)), raise_server_exceptions=False) as c:

        async def broken(*args, **kwargs):
            raise RuntimeError("secret internals")

        monkeypatch.setattr(c.app.state.registry.default, "encode", broken)
        with caplog.at_level(logging.INFO, logger="app.access"):
            r = c.post("/v1/encode", content=digit_pngs[0], headers=PNG)
        assert_problem(r, 500, "Internal server error", "the server failed to answer; see its logs")
        assert "secret" not in r.text and "Traceback" not in r.text
        assert [rec.status for rec in caplog.records if rec.name == "app.access"] == [500]

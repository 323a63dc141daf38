"""The hot paths (app/api/hot_paths.py) answer exactly what FastAPI's routes answer.

Every request below goes to two apps on the same repository, one with VAESERVE_HOT_PATHS on
and one with it off, and must get the same status, headers and bytes: valid requests of
every body kind and parameter, and invalid ones that the hot paths answer (bad images,
unknown models, keys) or leave to FastAPI (values its validation refuses).
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.api.hot_paths import MODEL_QUERY, V1_QUERIES, HotPaths
from app.main import create_app
from app.settings import Settings
from tests.app.api.test_hardening import KEY
from tests.app.api.test_v2 import binary_body, tensor

PNG = {"content-type": "image/png"}
Request = tuple[str, str, bytes, dict[str, str]]  # method, path and query, body, headers


def npy_body(arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, arrays)
    return out.getvalue()


def png_of(size: tuple[int, int], mode: str = "L") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 128).save(out, format="PNG")
    return out.getvalue()


def requests(png: bytes, arrays: np.ndarray) -> list[Request]:
    npy = npy_body(arrays)
    json_images = json.dumps({"arrays": arrays[:2, 0].tolist()}).encode()
    v2_json = json.dumps({"inputs": [tensor("image", arrays[:2])], "parameters": {"seed": 3}}).encode()
    v2_binary, v2_headers = binary_body({"image": arrays[:3]}, parameters={"binary_data_output": True})
    cases: list[Request] = []
    for query in ("", "?sample=true&seed=7", "?sample=TRUE&seed=007", "?sample=no", "?seed=-1", "?seed=+1",
                  "?seed=9223372036854775808", "?seed=abc", "?sample=maybe", "?seed=", "?seed=1&seed=2",
                  "?model=other", "?model=nope", "?model=digits&version=2", "?model=digits&version=9",
                  "?version=2", "?model=", "?unknown=1&seed=4"):  # fmt: skip
        cases.append(("POST", "/v1/encode" + query, png, PNG))
    cases += [
        ("POST", "/v1/encode", npy, {"content-type": "application/x-npy"}),
        ("POST", "/v1/encode", json_images, {"content-type": "application/json"}),
        ("POST", "/v1/encode", b"not a png", PNG),
        ("POST", "/v1/encode", b"", PNG),
        ("POST", "/v1/encode", png, {"content-type": "text/plain"}),
        ("POST", "/v1/encode/", png, PNG),
        ("PUT", "/v1/encode", png, PNG),
        # bad inputs, each answered by the same endpoint code both ways
        ("POST", "/v1/encode", png[: len(png) // 2], PNG),  # truncated
        ("POST", "/v1/encode", png_of((40, 40)), PNG),  # over the pixel limit below
        ("POST", "/v1/encode", png_of((20, 28)), PNG),  # not the model's size
        ("POST", "/v1/encode", png_of((28, 28), "RGBA"), PNG),  # transparency: composited
        ("POST", "/v1/encode", png_of((28, 28), "I;16"), PNG),  # 16 bits
        ("POST", "/v1/encode", b"x" * 70_000, PNG),  # over the body limit below
        ("POST", "/v1/encode", npy_body(np.repeat(arrays[:1], 9, axis=0)), {"content-type": "application/x-npy"}),
        ("POST", "/v1/encode", npy_body(arrays[:2] * 3), {"content-type": "application/x-npy"}),  # out of [0, 1]
        ("POST", "/v1/encode", b"\x93NUMPY garbage", {"content-type": "application/x-npy"}),
        ("POST", "/v1/encode", b'{"images": ["%%%"]}', {"content-type": "application/json"}),
        ("POST", "/v1/encode", b'{"images": []}', {"content-type": "application/json"}),
        ("POST", "/v1/encode", b'{"arrays": [[1, 2]], "extra": 1}', {"content-type": "application/json"}),
        ("POST", "/v1/encode", b"[", {"content-type": "application/json"}),
        ("POST", "/v1/encode", png, {}),  # no content type
    ]
    for query in ("", "?importance_samples=10&seed=3&score=mse&false_positive_rate=0.05&heatmap=true",
                  "?score=bogus", "?false_positive_rate=1.5", "?false_positive_rate=.5", "?false_positive_rate=0",
                  "?importance_samples=0", "?importance_samples=100000", "?importance_samples=-3", "?heatmap=2"):  # fmt: skip
        cases.append(("POST", "/v1/score" + query, png, PNG))
    for query in ("?model=nope", "?model=other&seed=5", "?version=9", "?seed=-1", "?heatmap=yes&seed=2"):
        cases.append(("POST", "/v1/score" + query, png, PNG))
    for query in ("?format=array&importance_samples=5", "?format=jpeg", "?heatmap=1&importance_samples=5", "",
                  "?seed=12&format=png", "?seed=x", "?importance_samples=0", "?importance_samples=1000000",
                  "?heatmap=off&model=digits&version=1", "?model=nope", "?version=3"):  # fmt: skip
        cases.append(("POST", "/v1/reconstruct" + query, png, PNG))
    cases.append(("POST", "/v1/reconstruct", b"not a png", PNG))
    cases.append(("POST", "/v1/score", npy_body(arrays[:2]), {"content-type": "application/x-npy"}))
    json_headers = {"content-type": "application/json"}
    for path in ("/v2/models/digits-encoder/infer", "/v2/models/digits-encoder/versions/2/infer",
                 "/v2/models/digits-encoder/versions/9/infer", "/v2/models/nope-encoder/infer",
                 "/v2/models/digits-encoder/versions//infer", "/v2/models/digits-encoder/versions/2/x/infer",
                 "/v2/models/digits-encoder/versions/infer", "/v2/models//infer"):  # fmt: skip
        cases.append(("POST", path, v2_json, json_headers))
    cases += [
        ("POST", "/v2/models/digits-scorer/infer", v2_binary, v2_headers),
        ("POST", "/v2/models/digits-decoder/infer", v2_json, json_headers),
        ("POST", "/v2/models/digits-encoder/infer", b"{", json_headers),
        ("POST", "/v2/models/digits-encoder/infer", b"{}", json_headers),
        (
            "POST",
            "/v2/models/digits-encoder/infer",
            json.dumps({"inputs": [tensor("image", arrays[:1, :, :5])]}).encode(),
            json_headers,
        ),  # wrong shape
        (
            "POST",
            "/v2/models/digits-encoder/infer",
            json.dumps({"inputs": [tensor("image", arrays[:1], "INT8")]}).encode(),
            json_headers,
        ),  # wrong datatype
        (
            "POST",
            "/v2/models/digits-encoder/infer",
            json.dumps({"inputs": [tensor("pixels", arrays[:1])]}).encode(),
            json_headers,
        ),  # wrong name
        ("POST", "/v2/models/digits-encoder/infer", v2_binary[:-8], v2_headers),  # binary data cut short
        ("POST", "/v2/models/digits-encoder/infer?seed=3", v2_json, json_headers),  # v2 has no query: ignored
        ("POST", "/v2/models/other-encoder/versions/1/infer", v2_json, json_headers),
    ]
    return cases


def answer(client: TestClient, request: Request, extra: dict[str, str] | None = None) -> tuple[Any, ...]:
    method, path, body, headers = request
    r = client.request(method, path, content=body, headers={**headers, "x-request-id": "same-id", **(extra or {})})
    return r.status_code, sorted(r.headers.items()), r.content


@pytest.fixture(scope="module")
def apps(repository: Path) -> Iterator[dict[bool, TestClient]]:
    settings = Settings(model_repository=repository, default_model="digits:1", max_images_per_request=8,
                        max_pixels_per_image=1000, max_body_bytes=65536)  # fmt: skip
    with (
        TestClient(create_app(settings.model_copy(update={"hot_paths": True}))) as hot,
        TestClient(create_app(settings.model_copy(update={"hot_paths": False}))) as routed,
    ):
        yield {True: hot, False: routed}


def test_hot_and_routed_answers_are_the_same(apps: dict[bool, TestClient], digit_pngs, digit_arrays) -> None:
    statuses = []
    for request in requests(digit_pngs[0], digit_arrays):
        hot = answer(apps[True], request)
        assert hot == answer(apps[False], request), request[:2]
        statuses.append((request[1], hot[0]))
    assert {status for _, status in statuses} == {200, 400, 404, 405, 413, 415, 422}, statuses
    assert ("/v2/models/digits-scorer/infer", 200) in statuses and ("/v2/models/digits-encoder/infer", 200) in statuses


def test_with_keys_and_before_the_models_are_ready(repository: Path, digit_pngs, digit_arrays) -> None:
    settings = Settings(model_repository=repository, default_model="digits:1", api_keys=[KEY])
    cases = requests(digit_pngs[0], digit_arrays)[:3] + requests(digit_pngs[0], digit_arrays)[-3:]
    keys = [{}, {"x-api-key": "wrong-key-0123456789"}, {"authorization": f"Bearer {KEY}"}]
    hot, routed = (create_app(settings.model_copy(update={"hot_paths": on})) for on in (True, False))
    for request in cases:  # no lifespan: the models are not loaded
        assert answer(TestClient(hot), request) == answer(TestClient(routed), request), request[:2]
    with TestClient(hot) as hot_client, TestClient(routed) as routed_client:
        for request in cases:
            for key in keys:
                assert answer(hot_client, request, key) == answer(routed_client, request, key), (request[:2], key)


@pytest.mark.parametrize("trouble", ["deadline", "bug"])
def test_a_deadline_or_a_bug_is_answered_alike(repository: Path, digit_pngs, monkeypatch, trouble: str) -> None:
    """A request past its deadline gets the same 504, and an endpoint that fails the same 500, both ways."""
    settings = Settings(model_repository=repository, request_timeout_s=0.2, batching=False)

    async def stuck(*args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(5)

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals")

    answers = []
    for on in (True, False):
        app = create_app(settings.model_copy(update={"hot_paths": on}))
        with TestClient(app, raise_server_exceptions=False) as client:
            monkeypatch.setattr(app.state.registry.default, "encode", stuck if trouble == "deadline" else broken)
            answers.append(answer(client, ("POST", "/v1/encode?seed=1", digit_pngs[0], PNG)))
    assert answers[0] == answers[1]
    assert answers[0][0] == (504 if trouble == "deadline" else 500)


def test_the_hot_paths_take_the_hot_requests(apps: dict[bool, TestClient]) -> None:
    hot: HotPaths = _middleware(apps[True]).hot_paths

    def found(method: str, path: str, query: bytes = b"") -> bool:
        return hot.find({"type": "http", "method": method, "path": path, "query_string": query}) is not None

    for path in V1_QUERIES:
        assert found("POST", path, b"seed=3&model=digits")
    assert found("POST", "/v2/models/digits-encoder/infer")
    assert found("POST", "/v2/models/digits-encoder/versions/2/infer")
    assert not found("POST", "/v1/encode", b"seed=-1")  # FastAPI answers: 422
    assert not found("GET", "/v1/encode")
    assert not found("POST", "/v1/decode")


def test_metrics_and_logs_name_the_route(apps: dict[bool, TestClient], digit_pngs, digit_arrays) -> None:
    client = apps[True]
    client.post("/v1/encode", content=digit_pngs[0], headers=PNG)
    body = json.dumps({"inputs": [tensor("image", digit_arrays[:1])]})
    assert client.post("/v2/models/digits-encoder/infer", content=body).status_code == 200
    text = client.get("/metrics").text
    assert 'vaeserve_requests_total{method="POST",route="/v1/encode",status="200"}' in text
    assert 'vaeserve_requests_total{method="POST",route="/v2/models/{model_name}/infer",status="200"}' in text


def test_refused_inputs_are_counted_alike(apps: dict[bool, TestClient]) -> None:
    def refused(client: TestClient) -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith('vaeserve_refused_inputs_total{reason="invalid-image",route="/v1/encode"}'):
                return float(line.split()[-1])
        return 0.0

    before = {on: refused(client) for on, client in apps.items()}
    for client in apps.values():
        assert client.post("/v1/encode", content=b"not a png", headers=PNG).status_code == 400
    assert {on: refused(client) - before[on] for on, client in apps.items()} == {True: 1.0, False: 1.0}


def test_every_query_parameter_of_the_hot_routes_is_parsed(apps: dict[bool, TestClient]) -> None:
    """A parameter added to a hot route must be added to V1_QUERIES too, or the hot path would drop it."""
    paths = apps[True].get("/openapi.json").json()["paths"]
    for path, parsers in V1_QUERIES.items():
        declared = {p["name"] for p in paths[path]["post"].get("parameters", []) if p["in"] == "query"}
        assert declared == {*parsers, *MODEL_QUERY}, path
    for path in ("/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{model_version}/infer"):
        assert all(p["in"] == "path" for p in paths[path]["post"].get("parameters", [])), path


def _middleware(client: TestClient) -> Any:
    """The app's RequestMiddleware, from Starlette's built middleware stack."""
    layer: Any = client.app.middleware_stack  # type: ignore[attr-defined]
    while type(layer).__name__ != "RequestMiddleware":
        layer = layer.app
    return layer

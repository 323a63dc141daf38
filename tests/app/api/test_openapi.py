"""/openapi.json as a user's first hour meets it: every example in it is a request that succeeds
against the shipped model, and every operation declares the errors it can give."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


@pytest.fixture(scope="module")
def shipped() -> Iterator[TestClient]:
    with TestClient(create_app(Settings())) as client:
        yield client


def _examples(content: dict[str, Any]) -> list[tuple[str, Any]]:
    if "example" in content:
        return [("example", content["example"])]
    return [(name, example["value"]) for name, example in content.get("examples", {}).items()]


def test_every_request_example_succeeds_against_the_shipped_model(shipped: TestClient) -> None:
    spec = shipped.get("/openapi.json").json()
    sent = []
    for path, item in spec["paths"].items():
        if "{" in path or path.startswith("/v1/admin"):
            continue  # path parameters and the admin API have their own tests
        for method, operation in item.items():
            for media, content in operation.get("requestBody", {}).get("content", {}).items():
                for name, value in _examples(content):
                    if media == "application/json":
                        r = shipped.request(method, path, json=value)
                    elif isinstance(value, str):  # a base64 example of a binary body
                        r = shipped.request(method, path, content=base64.b64decode(value),
                                            headers={"content-type": media})  # fmt: skip
                    else:
                        continue
                    assert r.status_code == 200, (method, path, media, name, r.text[:300])
                    sent.append((method.upper(), path, media, name))
            # each example of a query parameter, with the operation's first JSON body example
            bodies = _examples(operation.get("requestBody", {}).get("content", {}).get("application/json", {}))
            for parameter in operation.get("parameters", []):
                for name, example in parameter.get("examples", {}).items():
                    query = {parameter["name"]: example["value"]}
                    r = shipped.request(method, path, params=query, json=bodies[0][1] if bodies else None)
                    assert r.status_code == 200, (method, path, query, r.text[:300])
                    assert r.json()["results"][0][parameter["name"]] is not None, (path, query)  # what it asked for
                    sent.append((method.upper(), path, parameter["name"], name))
    posted = {path for _, path, _, _ in sent}
    assert {"/v1/encode", "/v1/decode", "/v1/reconstruct", "/v1/score", "/v1/interpolate", "/v1/traverse"} <= posted
    assert {("/v1/score", "mask"), ("/v1/score", "overlay")} <= {(path, what) for _, path, what, _ in sent}


def test_every_operation_declares_the_errors_it_can_give(shipped: TestClient) -> None:
    paths = shipped.get("/openapi.json").json()["paths"]

    def declared(path: str, method: str = "post") -> set[str]:
        responses = paths[path][method]["responses"]
        for code, response in responses.items():
            if code >= "400" and code != "default":
                example = response["content"]["application/problem+json"]["example"]
                assert example["status"] == int(code) and example["detail"], (path, code)
        return {code for code in responses if code >= "400"}

    images = {"400", "401", "404", "408", "413", "415", "422", "503", "504"}  # 408: a body that arrives too slowly
    for path in ("/v1/encode", "/v1/decode", "/v1/reconstruct", "/v1/score", "/v1/interpolate", "/v1/traverse"):
        assert declared(path) == images, path
    assert declared("/v1/samples", "get") == {"401", "404", "422", "503", "504"}  # no body: no 400, 413, 415
    assert declared("/v1/models", "get") == {"401", "503"}
    assert declared("/v1/models/{name}", "get") == {"401", "404", "422", "503"}
    assert declared("/v1/admin/reload") == {"401", "403", "409"}
    assert declared("/readyz", "get") == {"503"}
    v2 = [
        (p, m) for p, item in paths.items() if p.startswith("/v2") for m, op in item.items() if "422" in op["responses"]
    ]
    assert v2 == []  # v2 answers a readable but invalid request with 400 {"error"}


def test_with_keys_the_schema_says_how_to_send_one(repository) -> None:
    settings = Settings(model_repository=repository, api_keys=["k" * 16])
    with TestClient(create_app(settings)) as client:
        spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": schemes["bearer"]["description"]}
    assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-API-Key"
    either = [{"bearer": []}, {"apiKey": []}]
    assert spec["paths"]["/v1/admin/reload"]["post"]["security"] == either
    assert spec["paths"]["/v1/score"]["post"]["security"] == either
    assert "security" not in spec["paths"]["/healthz"]["get"] and "security" not in spec["paths"]["/readyz"]["get"]

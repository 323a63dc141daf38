"""POST /v1/interpolate and /v1/traverse through the real app: against the runtime and model/'s
maths, through the micro-batcher, decodable by the v2 decoder, every documented example sent
to the shipped model, and 4xx for bad input."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from app.settings import Settings
from model.bundle import load_bundle
from model.latent_paths import lerp, slerp, traversal_grid
from model.latents import active_dimensions
from model.preprocess import decode_image
from model.runtime import VAERuntime
from tests.app.api.test_v1 import assert_problem
from tests.app.api.test_v2 import outputs_of, tensor

ATOL = 0.5 / 255 + 1e-6  # a PNG pixel against the float it was rounded from


@pytest.fixture(scope="module")
def runtime(repository: Path) -> VAERuntime:
    return VAERuntime(load_bundle(repository / "digits" / "1"))


def _pixels(b64: str) -> np.ndarray:
    """A base64 PNG as (1, H, W) floats in [0, 1]."""
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return np.asarray(image, np.float32)[None] / 255.0


def _means(runtime: VAERuntime, pngs: list[bytes]) -> np.ndarray:
    mean, _ = runtime.encode(np.stack([decode_image(png, runtime.input) for png in pngs]))
    return mean


def _batch_rows(client: TestClient) -> dict[str, float]:
    """The sum of rows per operation of digits:1's micro-batchers, from /metrics."""
    rows = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == "vaeserve_batch_size_sum" and s.labels["model"] == "digits:1":
                rows[s.labels["operation"]] = s.value
    return rows


def _most_active(variance: list[float], count: int) -> list[int]:
    """The active dimensions (variance > 0.01), most active first; all by variance when none is (the tiny model)."""
    order = sorted(range(len(variance)), key=lambda d: -variance[d])
    return ([d for d in order if variance[d] > 0.01] or order)[:count]


# -- interpolate ----------------------------------------------------------------------------


def test_interpolate_two_uploads_along_the_slerp_path(client: TestClient, runtime: VAERuntime, digit_pngs) -> None:
    before = _batch_rows(client)
    files = [("file", (f"{i}.png", png, "image/png")) for i, png in enumerate(digit_pngs[:2])]
    r = client.post("/v1/interpolate?steps=5", files=files)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model"], body["version"], body["method"]) == ("digits", "1", "slerp")
    np.testing.assert_allclose(body["t"], [0, 0.25, 0.5, 0.75, 1])
    a, b = _means(runtime, digit_pngs[:2])
    expected = slerp(a, b, np.linspace(0, 1, 5))
    np.testing.assert_allclose(body["latents"], expected, rtol=1e-5, atol=1e-6)
    decoded = runtime.decode(expected)
    for image, want in zip(body["images"], decoded, strict=True):
        np.testing.assert_allclose(_pixels(image), want, atol=ATOL)
    after = _batch_rows(client)  # one encode of both images, one decode of the path, both micro-batched
    assert after["encode"] - before.get("encode", 0) == 2
    assert after["decode"] - before.get("decode", 0) == 5


def test_interpolate_latents_linearly_and_as_a_png_strip(client: TestClient, runtime: VAERuntime) -> None:
    z = [[1.0, -2.0, 0.5, 0.0], [-1.0, 2.0, 0.0, 1.5]]
    body = client.post("/v1/interpolate?steps=3&method=linear", json={"latents": z}).json()
    expected = lerp(np.float32(z[0]), np.float32(z[1]), np.array([0, 0.5, 1]))
    np.testing.assert_allclose(body["latents"], expected, rtol=1e-6)
    assert body["method"] == "linear" and body["latents"][0] == z[0] and body["latents"][-1] == z[1]
    strip = client.post("/v1/interpolate?steps=3&method=linear&format=png", json={"latents": z})
    assert strip.status_code == 200 and strip.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(strip.content)) as image:
        pixels = np.asarray(image, np.float32) / 255.0
    assert pixels.shape == (2 + 28 + 2, 2 + 3 * (28 + 2))  # one row, 2-pixel padding
    decoded = runtime.decode(expected)
    for i in range(3):
        np.testing.assert_allclose(pixels[2:30, 2 + 30 * i : 30 + 30 * i], decoded[i, 0], atol=ATOL)


def test_interpolated_latents_are_ordinary_tensors_for_the_v2_decoder(client: TestClient, digit_arrays) -> None:
    body = client.post("/v1/interpolate?steps=4", json={"arrays": digit_arrays[:2].tolist()}).json()
    z = np.asarray(body["latents"], np.float32)  # (4, D)
    r = client.post("/v2/models/digits-decoder/infer", json={"inputs": [tensor("z", z)]})
    assert r.status_code == 200, r.text
    v2_images = outputs_of(r)["image"]  # (4, 1, 28, 28)
    for image, want in zip(body["images"], v2_images, strict=True):
        np.testing.assert_allclose(_pixels(image), want, atol=ATOL)


# -- traverse -------------------------------------------------------------------------------


def test_traverse_an_image_over_its_most_active_dimensions(client: TestClient, runtime: VAERuntime, digit_pngs) -> None:
    r = client.post("/v1/traverse", content=digit_pngs[0], headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    body = r.json()
    stats = runtime.manifest.latents
    assert stats is not None
    expected = _most_active(stats.variance, 8)
    assert [row["dimension"] for row in body["dimensions"]] == expected
    assert [row["activity"] for row in body["dimensions"]] == [stats.variance[d] for d in expected]
    np.testing.assert_allclose(body["values"], [-3, -2, -1, 0, 1, 2, 3])
    (base,) = _means(runtime, digit_pngs[:1])
    np.testing.assert_allclose(body["base"], base, rtol=1e-5, atol=1e-6)
    dims = [row["dimension"] for row in body["dimensions"]]
    grid = traversal_grid(base, dims, np.linspace(-3, 3, 7))
    np.testing.assert_allclose([row["latents"] for row in body["dimensions"]], grid, rtol=1e-5, atol=1e-6)
    decoded = runtime.decode(grid.reshape(-1, 4)).reshape(len(dims), 7, 1, 28, 28)
    for row, want in zip(body["dimensions"], decoded, strict=True):
        for image, w in zip(row["images"], want, strict=True):
            np.testing.assert_allclose(_pixels(image), w, atol=ATOL)


def test_traverse_chosen_dimensions_of_a_latent_as_a_png_grid(client: TestClient, runtime: VAERuntime) -> None:
    before = _batch_rows(client)
    z = [0.3, -0.2, 0.1, 0.0]
    r = client.post("/v1/traverse?dimensions=2&dimensions=0&low=-1&high=2&steps=4&format=png", json={"latents": [z]})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(r.content)) as image:
        pixels = np.asarray(image, np.float32) / 255.0
    assert pixels.shape == (2 + 2 * 30, 2 + 4 * 30)  # a row per dimension, a column per value
    grid = traversal_grid(np.float32(z), [2, 0], np.linspace(-1, 2, 4))
    decoded = runtime.decode(grid.reshape(-1, 4)).reshape(2, 4, 28, 28)
    for i in range(2):
        for j in range(4):
            cell = pixels[2 + 30 * i : 30 + 30 * i, 2 + 30 * j : 30 + 30 * j]
            np.testing.assert_allclose(cell, decoded[i, j], atol=ATOL)
    assert _batch_rows(client)["decode"] - before.get("decode", 0) == 8  # one micro-batched decode


def test_model_detail_gives_each_dimensions_activity_from_the_manifest(client: TestClient, runtime) -> None:
    body = client.get("/v1/models/digits?version=1").json()
    stats = runtime.manifest.latents
    latents = body["latents"]
    assert (latents["split"], latents["images"], latents["threshold"]) == ("train", stats.images, 0.01)
    assert latents["most_active"] == active_dimensions(stats)
    assert [d["activity"] for d in latents["dimensions"]] == stats.variance
    assert [d["kl"] for d in latents["dimensions"]] == stats.kl
    assert [d["active"] for d in latents["dimensions"]] == [v > 0.01 for v in stats.variance]
    assert body["calibration"]["scores"] == list(runtime.manifest.calibration.scores)


# -- errors ---------------------------------------------------------------------------------

Z4 = [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("path", "body", "status", "title", "detail"),
    [
        ("/v1/interpolate", {"latents": [Z4]}, 422, "Invalid request", "interpolate takes 2 latents, got 1"),
        ("/v1/interpolate", {"latents": [Z4] * 3}, 422, "Invalid request", "interpolate takes 2 latents, got 3"),
        ("/v1/interpolate", {"latents": [[0, 0], [0, 0]]}, 422, "Invalid input", "latents must have shape [N, 4], got [2, 2]"),
        ("/v1/interpolate", {"latents": [Z4, [0]]}, 422, "Invalid input", "every latent must have the same number of values"),
        ("/v1/interpolate", {"latents": [Z4, [1e39, 0, 0, 0]]}, 422, "Invalid input", "latents hold values outside the float32 range"),
        ("/v1/interpolate", {"latents": [Z4, Z4], "images": []}, 422, "Invalid input", 'give "latents" or images, not both'),
        ("/v1/interpolate", {"latents": "a"}, 422, "Invalid request", "body latents: Input should be a valid list"),
        ("/v1/interpolate", {"latents": []}, 422, "Invalid input", "the request holds no latents; send 1 to 8"),
        ("/v1/interpolate", {"latents": [Z4, [0, 0, 0, True]]}, 422, "Invalid request", "body latents.1.3: Input should be a valid number"),
        ("/v1/interpolate?steps=1", {"latents": [Z4, Z4]}, 422, "Invalid request", "steps must be between 2 and 64 (VAESERVE_MAX_INTERPOLATION_STEPS), got 1"),
        ("/v1/interpolate?steps=65", {"latents": [Z4, Z4]}, 422, "Invalid request", "steps must be between 2 and 64 (VAESERVE_MAX_INTERPOLATION_STEPS), got 65"),
        ("/v1/interpolate?method=cubic", {"latents": [Z4, Z4]}, 422, "Invalid request", "query method: Input should be 'linear' or 'slerp'"),
        ("/v1/interpolate", {"images": ["bm90IGFuIGltYWdl", "bm90IGFuIGltYWdl"]}, 400, "Invalid image", "image 0: not a decodable image"),
        ("/v1/traverse", {"latents": [Z4, Z4]}, 422, "Invalid request", "traverse takes 1 image or latent, got 2 latents"),
        ("/v1/traverse?dimensions=4", {"latents": [Z4]}, 422, "Invalid request", "dimension must be between 0 and 3, got 4"),
        ("/v1/traverse?dimensions=1&dimensions=1", {"latents": [Z4]}, 422, "Invalid request", "dimensions repeat: [1, 1]"),
        ("/v1/traverse?steps=0", {"latents": [Z4]}, 422, "Invalid request", "steps must be between 1 and 32 (VAESERVE_MAX_TRAVERSAL_STEPS), got 0"),
        ("/v1/traverse?steps=33", {"latents": [Z4]}, 422, "Invalid request", "steps must be between 1 and 32 (VAESERVE_MAX_TRAVERSAL_STEPS), got 33"),
        ("/v1/traverse?low=-11", {"latents": [Z4]}, 422, "Invalid request", "low must be between -10.0 and 10.0 (VAESERVE_MAX_TRAVERSAL_RANGE), got -11.0"),
        ("/v1/traverse?low=2&high=1", {"latents": [Z4]}, 422, "Invalid request", "high must be between 2.0 and 10.0 (VAESERVE_MAX_TRAVERSAL_RANGE), got 1.0"),
        ("/v1/traverse?low=nan", {"latents": [Z4]}, 422, "Invalid request", "query low: Input should be a finite number"),
        ("/v1/traverse?high=inf", {"latents": [Z4]}, 422, "Invalid request", "query high: Input should be a finite number"),
        ("/v1/traverse?dimensions=x", {"latents": [Z4]}, 422, "Invalid request", "query dimensions 0: Input should be a valid integer, unable to parse string as an integer"),
    ],
)  # fmt: skip
def test_bad_requests_are_4xx_naming_what_was_wrong(
    client: TestClient, path: str, body: Any, status: int, title: str, detail: str
) -> None:
    assert_problem(client.post(path, json=body), status, title, detail)


def test_non_finite_latents_and_other_bodies(client: TestClient, digit_pngs) -> None:
    r = client.post(
        "/v1/traverse", content='{"latents": [[0, NaN, 0, 0]]}', headers={"content-type": "application/json"}
    )
    assert_problem(r, 422, "Invalid input", "latents hold NaN or infinite values")
    r = client.post("/v1/traverse", content=b"", headers={"content-type": "image/png"})
    assert_problem(r, 400, "Empty body", "the request has no body")
    r = client.post("/v1/interpolate", content=b"1,2", headers={"content-type": "text/csv"})
    assert r.status_code == 415
    r = client.post("/v1/interpolate", content=digit_pngs[0], headers={"content-type": "image/png"})
    assert_problem(r, 422, "Invalid request", "interpolate takes 2 images, got 1")


def test_too_many_dimensions_for_the_limit(repository: Path) -> None:
    settings = Settings(model_repository=repository, default_model="digits:1", max_traversal_dimensions=2,
                        max_interpolation_steps=3, max_traversal_range=1.5)  # fmt: skip
    with TestClient(create_app(settings)) as small:
        body = {"latents": [Z4]}
        r = small.post("/v1/traverse?dimensions=0&dimensions=1&dimensions=2", json=body)
        assert_problem(
            r,
            422,
            "Invalid request",
            "number of dimensions must be between 1 and 2 (VAESERVE_MAX_TRAVERSAL_DIMENSIONS), got 3",
        )
        swept = small.post("/v1/traverse?low=-1&high=1", json=body).json()["dimensions"]
        activity = [d["activity"] for d in small.get("/v1/models/digits").json()["latents"]["dimensions"]]
        assert [row["dimension"] for row in swept] == _most_active(activity, 2)  # within the limit
        r = small.post("/v1/traverse", json=body)  # the default range, -3 to 3, is past this server's 1.5
        assert_problem(
            r, 422, "Invalid request", "low must be between -1.5 and 1.5 (VAESERVE_MAX_TRAVERSAL_RANGE), got -3.0"
        )
        r = small.post("/v1/interpolate?steps=4", json={"latents": [Z4, Z4]})
        assert_problem(
            r, 422, "Invalid request", "steps must be between 2 and 3 (VAESERVE_MAX_INTERPOLATION_STEPS), got 4"
        )


# -- the documented examples, sent to the shipped model -------------------------------------


@pytest.fixture(scope="module")
def shipped() -> Iterator[TestClient]:
    with TestClient(create_app(Settings())) as client:
        yield client


def test_every_documented_example_succeeds_against_the_shipped_model(shipped: TestClient) -> None:
    spec = shipped.get("/openapi.json").json()
    sent = []
    for path in ("/v1/interpolate", "/v1/traverse"):
        operation = spec["paths"][path]["post"]
        assert operation["summary"] and operation["requestBody"]["required"]
        content = operation["requestBody"]["content"]
        assert {"image/png", "multipart/form-data", "application/json"} <= set(content)
        assert "latents" in content["application/json"]["schema"]["properties"]
        for name, example in content["application/json"]["examples"].items():
            r = shipped.post(path, json=example["value"])
            assert r.status_code == 200, (path, name, r.text)
            body = r.json()
            assert body["model"] == "mnist-vae"
            sent.append(f"{path} {name}")
    assert sorted(sent) == ["/v1/interpolate images", "/v1/interpolate latents", "/v1/traverse image",
                            "/v1/traverse latent", "/v1/traverse origin"]  # fmt: skip
    for name in ("InterpolateResponse", "TraverseResponse", "LatentActivity"):
        assert name in spec["components"]["schemas"]


def test_the_examples_latents_are_the_examples_images_posterior_means(shipped: TestClient) -> None:
    spec = shipped.get("/openapi.json").json()
    examples = spec["paths"]["/v1/interpolate"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    images = examples["images"]["value"]["images"]
    means = [r["mean"] for r in shipped.post("/v1/encode", json={"images": images}).json()["results"]]
    np.testing.assert_allclose(examples["latents"]["value"]["latents"], means, atol=0.005 + 1e-6)  # rounded to 0.01

"""The cases in tests/cases/ (README there) against the shipped model, as a new user sends them.

Each stands for a kind of fault that people serving image models have reported in public;
the property tests of the same kinds are in test_fuzz.py and tests/model/test_images.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.app.api.test_v1 import assert_problem

CASES = Path(__file__).resolve().parents[2] / "cases"
PNG, NPY = {"content-type": "image/png"}, {"content-type": "application/x-npy"}
NO_IMAGES = "the request holds no images; send 1 to 256"


def case(name: str) -> bytes:
    return (CASES / name).read_bytes()


@pytest.fixture(scope="module")
def shipped() -> Iterator[TestClient]:
    with TestClient(create_app(Settings())) as client:  # the shipped mnist-vae:1
        yield client


def _encode(client: TestClient, name: str) -> np.ndarray:
    r = client.post("/v1/encode", content=case(name), headers=PNG)
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["results"][0]["mean"])


def test_images_score_as_the_picture_a_viewer_shows(shipped: TestClient) -> None:
    digit = _encode(shipped, "digit.png")
    np.testing.assert_array_equal(_encode(shipped, "exif_orient6.jpg"), _encode(shipped, "exif_orient6_displayed.png"))
    for name in ("palette_trns.png", "rgba_white_ink.png"):
        np.testing.assert_array_equal(_encode(shipped, name), digit)
    r = shipped.post("/v1/encode", content=case("float_ok.tif"), headers={"content-type": "image/tiff"})
    np.testing.assert_array_equal(r.json()["results"][0]["mean"], digit)
    upright = shipped.post("/v1/score", content=case("exif_orient6.jpg"), headers=PNG).json()["results"][0]
    assert upright["is_anomaly"] is False


def test_non_finite_and_ambiguous_pixels_are_refused(shipped: TestClient) -> None:
    r = shipped.post("/v1/score", content=case("float_nan.tif"), headers={"content-type": "image/tiff"})
    assert_problem(r, 422, "Invalid input", "image 0: image holds NaN or infinite pixel values")
    r = shipped.post("/v1/score", content=case("gray12_in16.png"), headers=PNG)
    assert r.status_code == 422 and "largest value 4064 fits in 12 bits" in r.json()["detail"]


@pytest.mark.parametrize("path", ["/v1/encode", "/v1/decode", "/v1/score"])
def test_deeply_nested_json_is_a_400(shipped: TestClient, path: str) -> None:
    r = shipped.post(path, content=case("deep_nested.json"), headers={"content-type": "application/json"})
    assert_problem(r, 400, "Invalid JSON", "the JSON body is nested too deeply")
    r = shipped.post("/v2/models/mnist-vae-encoder/infer", content=case("deep_nested.json"))
    assert r.status_code == 400 and "recursion limit" in r.json()["error"]


def test_zero_images_is_the_same_answer_everywhere(shipped: TestClient) -> None:
    answers = [shipped.post(path, content=case("empty_batch.npy"), headers=NPY)
               for path in ("/v1/encode", "/v1/score", "/v1/reconstruct")]  # fmt: skip
    answers += [shipped.post("/v1/score", json={"images": []}), shipped.post("/v1/encode", json={"arrays": []}),
                shipped.post("/v1/reconstruct", files=[("field", (None, "no file"))])]  # fmt: skip
    for r in answers:
        assert_problem(r, 422, "Invalid input", NO_IMAGES)
    empty = {"name": "image", "datatype": "FP32", "shape": [0, 1, 28, 28], "data": []}
    for model in ("mnist-vae-encoder", "mnist-vae-scorer"):
        r = shipped.post(f"/v2/models/{model}/infer", json={"inputs": [empty]})
        assert (r.status_code, r.json()) == (400, {"error": NO_IMAGES})


def test_a_latent_out_of_range_is_refused_never_answered_with_nulls(shipped: TestClient) -> None:
    for accept in ("application/json", "image/png"):
        r = shipped.post("/v1/decode", content=case("huge_latent.json"), headers={"accept": accept,
                                                                                     "content-type": "application/json"})  # fmt: skip
        assert_problem(r, 422, "Invalid input",
                       "latent values must lie in [-100, 100] (100 standard deviations of the prior); "
                       "latent 0 holds 1e+38 at dimension 0")  # fmt: skip
    r = shipped.post("/v2/models/mnist-vae-decoder/infer", content=case("huge_latent_v2.json"))
    assert r.status_code == 400 and r.json()["error"].startswith("latent values must lie in [-100, 100]")
    at_the_edge = json.loads(case("huge_latent.json"))
    at_the_edge["latents"][0][0] = 100.0
    r = shipped.post("/v1/decode", json=at_the_edge)
    pixels = np.asarray(r.json()["arrays"], dtype=np.float64)  # no null: NaN would fail the cast
    assert r.status_code == 200 and np.isfinite(pixels).all() and 0 <= pixels.min() <= pixels.max() <= 1


def test_the_binary_header_length_must_be_ascii_digits_within_the_body(shipped: TestClient) -> None:
    body, length = case("v2_scorer_binary.bin"), case("v2_scorer_binary.hdrlen").decode().strip()
    url = "/v2/models/mnist-vae-scorer/infer"
    r = shipped.post(url, content=body, headers={"inference-header-content-length": length})
    assert r.status_code == 200 and r.headers["inference-header-content-length"]
    for bad in ("²", "+162", "162 ", "16e1", "-1", "0", str(len(body) + 1), "9" * 5000):
        raw = bad.encode("latin-1")  # "²" is the single byte 0xB2, as the case sends it
        r = shipped.post(url, content=body, headers={"inference-header-content-length": raw})
        error = r.json()["error"]  # (the test client sends 0xB2 as UTF-8: still not an ASCII digit)
        assert r.status_code == 400 and error.startswith("Inference-Header-Content-Length '"), bad
        assert error.endswith("' is not a length within the body"), bad


def test_work_over_the_budget_is_refused_up_front(shipped: TestClient) -> None:
    r = shipped.post("/v1/score?importance_samples=5000", content=case("heavy6.npy"), headers=NPY)
    assert_problem(r, 422, "Invalid request",
                   "6 images x importance_samples 5000 = 30000 is over the limit of 16384 importance samples per "
                   "request (VAESERVE_MAX_TOTAL_IMPORTANCE_SAMPLES); send fewer images or a smaller importance_samples")  # fmt: skip
    r = shipped.post("/v1/score", content=case("single.npy"), headers=NPY)
    assert r.status_code == 200 and len(r.json()["results"]) == 1

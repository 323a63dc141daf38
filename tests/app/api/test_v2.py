"""The Open Inference Protocol (v2): metadata, config, JSON and binary tensors, errors, and
the same numbers as /v1 for the same inputs. Triton's own client is in test_v2_tritonclient.py."""

from __future__ import annotations

import base64
import gzip
import io
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings
from model.scores import SCORE_NAMES
from tests.app.api.test_hardening import KEY

LATENT_DIM = 4  # of the session's tiny bundle: model.latent_dim in tests/helpers.py TINY_ARGS


def tensor(name: str, values: np.ndarray, datatype: str = "FP32") -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": list(values.shape), "data": values.ravel().tolist()}


def binary_body(inputs: dict[str, np.ndarray], **request: Any) -> tuple[bytes, dict[str, str]]:
    """A request in Triton's binary tensor extension: JSON header, then each input's bytes."""
    header = {
        **request,
        "inputs": [
            {"name": name, "datatype": "FP32", "shape": list(a.shape), "parameters": {"binary_data_size": a.nbytes}}
            for name, a in inputs.items()
        ],
    }
    head = json.dumps(header).encode()
    body = head + b"".join(a.astype("<f4").tobytes() for a in inputs.values())
    return body, {"inference-header-content-length": str(len(head)), "content-type": "application/octet-stream"}


def outputs_of(response: Any) -> dict[str, np.ndarray]:
    """Every output of an infer response, JSON or binary, as arrays."""
    length = response.headers.get("inference-header-content-length")
    header = json.loads(response.content[: int(length)] if length else response.content)
    binary, offset, arrays = response.content[int(length) :] if length else b"", 0, {}
    dtypes = {"FP32": "<f4", "FP64": "<f8", "BOOL": "?"}
    for out in header["outputs"]:
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is None:
            arrays[out["name"]] = np.asarray(out["data"], dtype=dtypes[out["datatype"]]).reshape(out["shape"])
        else:
            chunk = binary[offset : offset + size]
            arrays[out["name"]] = np.frombuffer(chunk, dtypes[out["datatype"]]).reshape(out["shape"])
            offset += size
    assert offset == len(binary)
    return arrays


def assert_error(response: Any, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": message}


def test_server_metadata_and_health(client: TestClient) -> None:
    meta = client.get("/v2").json()
    assert meta["name"] == "vaeserve" and meta["version"] == client.app.version
    assert {"binary_tensor_data", "model_configuration"} <= set(meta["extensions"])
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert client.get(path).status_code == 200


def test_model_metadata_per_model_and_version(client: TestClient) -> None:
    encoder = client.get("/v2/models/digits-encoder").json()
    assert encoder["name"] == "digits-encoder" and encoder["versions"] == ["1", "2"]
    assert encoder["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert [o["name"] for o in encoder["outputs"]] == ["mean", "log_var", "z"]
    assert all(o["shape"] == [-1, LATENT_DIM] for o in encoder["outputs"])
    decoder = client.get("/v2/models/digits-decoder/versions/2").json()
    assert decoder["inputs"] == [{"name": "z", "datatype": "FP32", "shape": [-1, LATENT_DIM]}]
    assert decoder["outputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    scorer = client.get("/v2/models/digits-scorer").json()
    names = [o["name"] for o in scorer["outputs"]]
    assert names == [*SCORE_NAMES, "pixel_nll", "score", "threshold", "p_value", "is_anomaly", "mask"]
    assert scorer["outputs"][len(SCORE_NAMES)] == {"name": "pixel_nll", "datatype": "FP32", "shape": [-1, 1, 28, 28]}
    assert scorer["outputs"][-2] == {"name": "is_anomaly", "datatype": "BOOL", "shape": [-1]}
    assert scorer["outputs"][-1] == {"name": "mask", "datatype": "BOOL", "shape": [-1, 28, 28]}
    assert client.get("/v2/models/other-scorer/versions/1/ready").status_code == 200
    assert_error(
        client.get("/v2/models/digits-encoder/versions/7"), 404,
        "unknown model 'digits-encoder' version '7'; this server has digits-decoder, digits-encoder, "
        "digits-scorer, other-decoder, other-encoder, other-scorer",
    )  # fmt: skip
    assert client.get("/v2/models/digits/ready").status_code == 404  # a bundle is not a v2 model: no role


def test_config_in_tritons_form(client: TestClient) -> None:
    config = client.get("/v2/models/digits-scorer/config").json()
    manifest = client.app.state.registry.get("digits").manifest
    cal = manifest.calibration
    assert config["max_batch_size"] == 8  # the client fixture's max_images_per_request
    assert config["input"] == [{"name": "image", "data_type": "TYPE_FP32", "dims": [1, 28, 28]}]
    assert config["output"][0] == {"name": "neg_elbo", "data_type": "TYPE_FP64", "dims": [1], "reshape": {"shape": []}}
    assert config["parameters"] == {
        "importance_samples": {"string_value": str(cal.importance_samples)},
        "seed": {"string_value": "0"},
        "score": {"string_value": cal.score},
        "false_positive_rate": {"string_value": str(cal.false_positive_rate)},
    }
    encoder = client.get("/v2/models/digits-encoder/versions/1/config").json()
    assert encoder["output"][0] == {"name": "mean", "data_type": "TYPE_FP32", "dims": [LATENT_DIM]}


def test_json_inference_gives_what_v1_gives(client: TestClient, digit_arrays: np.ndarray) -> None:
    images = digit_arrays  # (4, 1, 28, 28)
    v1 = client.post("/v1/encode?sample=true&seed=3", json={"arrays": images.tolist()}).json()["results"]
    r = client.post("/v2/models/digits-encoder/infer", json={"id": "a-1", "inputs": [tensor("image", images)],
                                                             "parameters": {"seed": 3}})  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert (
        r.json()["model_name"] == "digits-encoder" and r.json()["model_version"] == "2" and r.json()["id"] == "a-1"
    )  # the highest
    out = outputs_of(r)
    for name in ("mean", "log_var", "z"):
        np.testing.assert_array_equal(out[name], np.asarray([row[name] for row in v1], np.float32))

    z = out["mean"][:2]
    v1_images = client.post("/v1/decode", json={"latents": z.tolist(), "format": "array"}).json()["arrays"]
    decoded = outputs_of(client.post("/v2/models/digits-decoder/infer", json={"inputs": [tensor("z", z)]}))
    np.testing.assert_array_equal(decoded["image"], np.asarray(v1_images, np.float32))

    query = "importance_samples=8&seed=5&score=iwae_nll&false_positive_rate=0.1"
    v1_scores = client.post(f"/v1/score?{query}", json={"arrays": images.tolist()}).json()
    params = {"importance_samples": 8, "seed": 5, "score": "iwae_nll", "false_positive_rate": 0.1}
    scored = outputs_of(
        client.post("/v2/models/digits-scorer/infer", json={"inputs": [tensor("image", images)], "parameters": params})
    )
    for name in (*SCORE_NAMES, "score", "p_value", "is_anomaly"):
        assert scored[name].tolist() == [row[name] for row in v1_scores["results"]], name
    assert scored["threshold"].tolist() == [v1_scores["threshold"]] * len(images)
    runtime = client.app.state.registry.get("digits").runtime
    np.testing.assert_array_equal(scored["pixel_nll"], runtime.score(images, 8, 5).pixel_nll)
    masked = client.post(f"/v1/score?{query}&mask=true", json={"arrays": images.tolist()}).json()["results"]
    for got, row in zip(scored["mask"], masked, strict=True):  # the same mask as /v1/score's PNG
        with Image.open(io.BytesIO(base64.b64decode(row["mask"]))) as png:
            np.testing.assert_array_equal(got, np.asarray(png))


def test_binary_tensors_in_and_out(client: TestClient, digit_arrays: np.ndarray) -> None:
    json_out = outputs_of(
        client.post("/v2/models/digits-encoder/infer", json={"inputs": [tensor("image", digit_arrays)]})
    )
    body, headers = binary_body({"image": digit_arrays}, parameters={"binary_data_output": True})
    r = client.post("/v2/models/digits-encoder/infer", content=body, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    header = json.loads(r.content[: int(r.headers["inference-header-content-length"])])
    assert [o["parameters"] for o in header["outputs"]] == [{"binary_data_size": 4 * LATENT_DIM * 4}] * 3
    binary_out = outputs_of(r)
    for name in ("mean", "log_var", "z"):
        np.testing.assert_array_equal(binary_out[name], json_out[name])
    # per output: one binary, one JSON
    body, headers = binary_body({"image": digit_arrays}, outputs=[
        {"name": "log_var", "parameters": {"binary_data": True}}, {"name": "mean"}])  # fmt: skip
    r = client.post("/v2/models/digits-encoder/infer", content=body, headers=headers)
    header = json.loads(r.content[: int(r.headers["inference-header-content-length"])])
    assert [(o["name"], "data" in o) for o in header["outputs"]] == [("log_var", False), ("mean", True)]
    np.testing.assert_array_equal(outputs_of(r)["log_var"], json_out["log_var"])


def test_uint8_images_and_compressed_bodies(client: TestClient, digit_arrays: np.ndarray) -> None:
    want = outputs_of(client.post("/v2/models/digits-encoder/infer", json={"inputs": [tensor("image", digit_arrays)]}))
    pixels = np.round(digit_arrays * 255).astype(np.uint8)
    as_uint8 = {"inputs": [tensor("image", pixels, "UINT8")]}
    got = outputs_of(client.post("/v2/models/digits-encoder/infer", json=as_uint8))
    np.testing.assert_allclose(got["mean"], want["mean"], atol=1e-2)  # the PNG-like 8-bit rounding only
    for encoding, pack in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        body, headers = binary_body({"image": digit_arrays})
        r = client.post("/v2/models/digits-encoder/infer", content=pack(body),
                        headers={**headers, "content-encoding": encoding})  # fmt: skip
        np.testing.assert_array_equal(outputs_of(r)["mean"], want["mean"])


def _raw(header: dict[str, Any], tail: bytes = b"", length: int | None = None) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + tail, {"inference-header-content-length": str(len(head) if length is None else length)}


IMAGE = {"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28]}
ZEROS = np.zeros((1, 1, 28, 28), "<f4").tobytes()


# fmt: off
BAD_REQUESTS = [
    ("digits-encoder", (b"", {}), 400, "the request has no body"),
    ("digits-encoder", (b"{", {}), 400, "invalid inference request: body: Invalid JSON: EOF while parsing an "
     "object at line 1 column 1"),
    ("digits-encoder", _raw({"inputs": []}), 400, "invalid inference request: inputs: List should have at least "
     "1 item after validation, not 0"),
    ("digits-encoder", _raw({"inputs": [IMAGE]}, ZEROS, length=10_000), 400,
     "Inference-Header-Content-Length '10000' is not a length within the body"),
    ("digits-encoder", _raw({"inputs": [{**IMAGE, "datatype": "BYTES", "data": ["a"]}]}), 400,
     "input 'image': datatype BYTES is not supported by this server; send BOOL, UINT8, UINT16, UINT32, UINT64, "
     "INT8, INT16, INT32, INT64, FP16, FP32, FP64"),
    ("digits-encoder", _raw({"inputs": [{**IMAGE, "datatype": "FP31", "data": [0.5] * 784}]}), 400,
     "input 'image': datatype 'FP31' is not a datatype of the protocol; send BOOL, UINT8, UINT16, UINT32, UINT64, "
     "INT8, INT16, INT32, INT64, FP16, FP32, FP64"),
    ("digits-encoder", _raw({"inputs": [{**IMAGE, "data": [0.5] * 10}]}), 400,
     "input 'image': data holds 10 values, shape [1, 1, 28, 28] needs 784"),
    ("digits-encoder", _raw({"inputs": [{**IMAGE, "data": [[0.5], [0.5, 0.5]]}]}), 400,
     "input 'image': data is not a rectangular list of FP32 values"),
    ("digits-encoder", _raw({"inputs": [{**IMAGE, "parameters": {"binary_data_size": 100}}]}, ZEROS), 400,
     "input 'image': binary_data_size 100 is not 3136 (FP32 [1, 1, 28, 28])"),
    ("digits-encoder", _raw({"inputs": [{**IMAGE, "parameters": {"binary_data_size": 3136}}]}, ZEROS + b"x"), 400,
     "the body has 1 bytes past the inputs' binary data"),
    ("digits-encoder", _raw({"inputs": [{**IMAGE, "parameters": {"binary_data_size": 3136}}]}, ZEROS[:-4]), 400,
     "input 'image': the body ends before its 3136 bytes of binary data"),
    ("digits-encoder", _raw({"inputs": [{**IMAGE, "name": "z", "data": [0.0] * 784}]}), 400,
     "digits-encoder takes one input, 'image'; got 'z'"),
    ("digits-encoder", _raw({"inputs": [{**IMAGE, "shape": [1, 1, 28, 27], "data": [0.0] * 756}]}), 400,
     "array shape [1, 1, 28, 27] does not match the model's [N, 1, 28, 28]"),
    ("digits-encoder", _raw({"inputs": [{**IMAGE, "data": [2.0] * 784}]}), 400,
     "image 0: array values must lie in [0.0, 1.0]"),
    ("digits-encoder", _raw({"inputs": [{**IMAGE, "datatype": "INT32", "data": [0] * 784}]}), 400,
     "input 'image': datatype must be FP32 (or FP16, FP64, UINT8 0-255)"),
    ("digits-encoder", _raw({"inputs": [{**IMAGE, "shape": [9, 1, 28, 28], "data": [0.0] * 9 * 784}]}), 413,
     "9 images is over the limit of 8 per request (VAESERVE_MAX_IMAGES_PER_REQUEST)"),
    ("digits-scorer", _raw({"inputs": [{**IMAGE, "shape": [0, 1, 28, 28], "data": []}]}), 400,
     "the request holds no images; send 1 to 8"),
    ("digits-encoder", _raw({"inputs": [{**IMAGE, "data": [0.0] * 784}], "outputs": [{"name": "nope"}]}), 400,
     "output 'nope' is not one of mean, log_var, z"),
    ("digits-decoder", _raw({"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 3], "data": [0, 0, 0]}]}),
     400, "latents must have shape [N, 4], got [1, 3]"),
    ("digits-scorer", _raw({"inputs": [{**IMAGE, "data": [0.0] * 784}], "parameters": {"importanc_samples": 8}}),
     400, "parameter importanc_samples: Extra inputs are not permitted (parameters of digits-scorer: "
     "importance_samples, seed, score, false_positive_rate)"),
    ("digits-scorer", _raw({"inputs": [{**IMAGE, "data": [0.0] * 784}], "parameters": {"score": "kl"}}),
     400, "parameter score: 'kl' is not a calibrated score (neg_elbo, iwae_nll, mse, complexity, posterior_mean_nll, "
     "discretised_nll, dssim, mahalanobis, latent_nll, fisher, tippett)"),
    ("digits-scorer", _raw({"inputs": [{**IMAGE, "data": [0.0] * 784}],
                            "parameters": {"importance_samples": 0}}),
     400, "importance_samples must be between 1 and 5000 (VAESERVE_MAX_IMPORTANCE_SAMPLES), got 0"),
    ("nope-encoder", _raw({"inputs": [IMAGE]}), 404, "unknown model 'nope-encoder'; this server has "
     "digits-decoder, digits-encoder, digits-scorer, other-decoder, other-encoder, other-scorer"),
]
# fmt: on


@pytest.mark.parametrize(("model", "body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_name_what_is_wrong(
    client: TestClient, model: str, body: tuple[bytes, dict[str, str]], status: int, message: str
) -> None:
    assert_error(client.post(f"/v2/models/{model}/infer", content=body[0], headers=body[1]), status, message)


def test_encodings_and_limits(repository: Path) -> None:
    settings = Settings(model_repository=repository, max_body_bytes=4096)
    with TestClient(create_app(settings)) as c:
        body, headers = _raw({"inputs": [{**IMAGE, "parameters": {"binary_data_size": 3136}}]}, ZEROS)
        assert c.post("/v2/models/digits-encoder/infer", content=body, headers=headers).status_code == 200
        bomb = gzip.compress(b" " * 100_000)
        assert_error(c.post("/v2/models/digits-encoder/infer", content=bomb, headers={"content-encoding": "gzip"}),
                     413, "the decompressed body is over the limit of 4096 bytes (VAESERVE_MAX_BODY_BYTES)")  # fmt: skip
        assert_error(c.post("/v2/models/digits-encoder/infer", content=b"x" * 5000), 413,
                     "the body is over the limit of 4096 bytes (VAESERVE_MAX_BODY_BYTES)")  # fmt: skip
        assert_error(c.post("/v2/models/digits-encoder/infer", content=body, headers={"content-encoding": "br"}),
                     415, "Content-Encoding 'br' is not supported; use gzip or deflate")  # fmt: skip
        assert_error(
            c.post("/v2/models/digits-encoder/infer", content=b"xx", headers={"content-encoding": "gzip"}),
            400,
            "the body is not valid gzip data (Error -3 while decompressing data: incorrect header check)",
        )
        assert_error(c.get("/v2/nothing/here"), 404, "Not Found")


def test_keys_guard_v2_models_but_not_v2_health(repository: Path) -> None:
    with TestClient(create_app(Settings(model_repository=repository, api_keys=[KEY]))) as c:
        assert c.get("/v2/health/live").status_code == 200 and c.get("/v2/health/ready").status_code == 200
        r = c.get("/v2/models/digits-encoder")
        assert_error(r, 401, "an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>")
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/v2", headers={"x-api-key": KEY}).status_code == 200

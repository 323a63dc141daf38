"""Property tests (hypothesis) over every request parser: whatever the body, an answer in the
protocol's form, a 4xx naming what was wrong or a 200, never a 5xx, never a null pixel.

v1 bodies (JSON values, base64 images, .npy headers of any shape and dtype, multipart, raw
images) and v2 requests (JSON tensors of any shape, datatype and data, binary tensors with
any header length and binary_data_size). Each test runs EXAMPLES generated cases, each of
one to three requests.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = 150
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))  # fmt: skip

# Any JSON value: numbers of any size and sign (and the non-finite floats Python's json writes).
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=40)  # fmt: skip
dims = st.integers(min_value=-(2**70), max_value=2**70) | st.integers(min_value=0, max_value=40)
shapes = st.lists(dims, max_size=6)
pixel_rows = st.lists(st.lists(st.floats(width=32) | st.integers(-300, 300), min_size=28, max_size=28), min_size=28, max_size=28)  # fmt: skip


def assert_answered(r: Any, v2: bool = False) -> None:
    """A 200, or a 4xx in the protocol's error form; never a 5xx."""
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["error" if v2 else "detail"]
    elif r.headers["content-type"] == "application/json":
        json.loads(r.text, parse_constant=_no_constant)  # no NaN/Infinity; null only where the schema allows


def _no_constant(name: str) -> None:
    raise AssertionError(f"{name} in a JSON answer")


@FUZZ
@given(payload=json_values, key=st.sampled_from(["images", "arrays", "latents", None]))
def test_v1_json_bodies(client: TestClient, payload: Any, key: str | None) -> None:
    body = payload if key is None else {key: payload}
    for path in ("/v1/encode", "/v1/decode"):
        assert_answered(client.post(path, content=json.dumps(body), headers={"content-type": "application/json"}))


@FUZZ
@given(
    arrays=st.lists(pixel_rows | json_values, max_size=3),
    images=st.lists(st.binary(max_size=64) | st.text(max_size=20), max_size=3),
)
def test_v1_arrays_and_base64_images(client: TestClient, arrays: list[Any], images: list[Any]) -> None:
    assert_answered(
        client.post("/v1/score", content=json.dumps({"arrays": arrays}), headers={"content-type": "application/json"})
    )
    encoded = [base64.b64encode(i).decode() if isinstance(i, bytes) else i for i in images]
    assert_answered(client.post("/v1/encode", json={"images": encoded}))


def _npy(shape: list[int], descr: str, fortran: bool, data: bytes, version: int) -> bytes:
    header = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)}).encode()
    header += b" " * (63 - (len(header) + 12) % 64) + b"\n"
    size = len(header).to_bytes(2 if version == 1 else 4, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + size + header + data


@FUZZ
@given(
    shape=shapes | st.sampled_from([[0, 1, 28, 28], [1, 1, 28, 28], [2, 28, 28], [3, 1, 28, 28]]),
    descr=st.sampled_from(["|u1", "<f4", ">f8", "<f2", "<i4", "|b1", "<c8", "|O", "<U3", "|V4", "<M8[s]"])
    | st.text(max_size=6),
    fortran=st.booleans(),
    size=st.integers(0, 2 * 28 * 28 * 8) | st.sampled_from([784, 784 * 4, 2 * 784 * 4]),
    fill=st.sampled_from([0, 0x3F, 0xFF, 0x7F]),
    version=st.sampled_from([1, 2]),
)
def test_v1_npy_headers_of_any_shape_and_dtype(client: TestClient, shape, descr, fortran, size, fill, version) -> None:
    body = _npy(shape, descr, fortran, bytes([fill]) * size, version)
    assert_answered(client.post("/v1/score", content=body, headers={"content-type": "application/x-npy"}))


# Starlette's multipart parser leaves the in-memory file of a part cut off by the body's end
# unclosed (the ResourceWarning of SpooledTemporaryFile.__del__); it holds no descriptor.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@FUZZ
@given(
    content_type=st.sampled_from(["image/png", "image/jpeg", "image/tiff", "multipart/form-data",
                                  "multipart/form-data; boundary=b", "application/json", "application/x-npy"]),
    body=st.binary(max_size=300),
    prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"GIF89a", b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\n"]),
)  # fmt: skip
def test_v1_raw_bodies_of_any_content(client: TestClient, content_type: str, body: bytes, prefix: bytes) -> None:
    r = client.post("/v1/encode", content=prefix + body, headers={"content-type": content_type})
    assert_answered(r)


DATATYPES = ["FP32", "FP64", "FP16", "UINT8", "INT32", "INT64", "BOOL", "BYTES", "fp32", ""]


@FUZZ
@given(model=st.sampled_from(["digits-encoder", "digits-decoder", "digits-scorer"]), shape=shapes | st.sampled_from([[1, 1, 28, 28], [1, 4], [0, 4], [0, 1, 28, 28]]),
       datatype=st.sampled_from(DATATYPES), data=json_values | st.lists(st.floats() | st.integers(), min_size=0, max_size=800),
       name=st.sampled_from(["image", "z", "x"]), parameters=st.dictionaries(st.text(max_size=12), scalars, max_size=3))  # fmt: skip
def test_v2_json_tensors(client: TestClient, model: str, shape, datatype: str, data, name: str, parameters) -> None:
    if isinstance(data, list) and data and len(data) in (784, 4) and shape in ([1, 1, 28, 28], [1, 4]):
        data = [abs(v) % 1 if isinstance(v, float) and math.isfinite(v) else v for v in data]  # often valid
    request = {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}], "parameters": parameters}
    r = client.post(f"/v2/models/{model}/infer", content=json.dumps(request))
    assert_answered(r, v2=True)


@FUZZ
@given(
    length=st.text(max_size=8) | st.integers(-(2**66), 2**66).map(str),
    binary_size=st.integers(-(2**66), 2**66) | st.sampled_from([3136, 784, 0]),
    shape=shapes | st.just([1, 1, 28, 28]),
    tail=st.integers(0, 4000),
    compress=st.booleans(),
)
def test_v2_binary_tensors_of_any_lengths(
    client: TestClient, length: str, binary_size: int, shape, tail: int, compress: bool
) -> None:
    header = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": shape,
                                     "parameters": {"binary_data_size": binary_size}}]}).encode()  # fmt: skip
    body = header + np.zeros(tail // 4, "<f4").tobytes()
    headers = {"inference-header-content-length": length.encode("utf-8", "replace") if length else str(len(header))}
    if compress:
        import gzip

        body, headers["content-encoding"] = gzip.compress(body), "gzip"
    assert_answered(client.post("/v2/models/digits-scorer/infer", content=body, headers=headers), v2=True)


@FUZZ
@given(
    latents=st.lists(
        st.lists(st.floats(width=64) | st.integers(-(10**40), 10**40), min_size=4, max_size=4), min_size=1, max_size=3
    )
)
def test_decoded_pixels_are_finite_or_refused(client: TestClient, latents: list[list[float]]) -> None:
    r = client.post(
        "/v1/decode",
        content=json.dumps({"latents": latents, "format": "array"}),
        headers={"content-type": "application/json"},
    )
    assert_answered(r)
    if r.status_code == 200:
        assert np.isfinite(np.asarray(r.json()["arrays"], np.float64)).all()
    v2 = {"inputs": [{"name": "z", "datatype": "FP32", "shape": [len(latents), 4], "data": latents}]}
    assert_answered(client.post("/v2/models/digits-decoder/infer", content=json.dumps(v2)), v2=True)

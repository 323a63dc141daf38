"""Every way a request carries numbers and images is read strictly and refused by name.

Each test covers a kind of fault a fresh tester found (grader A's list, number in brackets),
on every path it can take: v1 and v2, images, arrays and latents, every JSON body.
"""

from __future__ import annotations

import base64
import gzip
import json
import textwrap
import zlib
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.app.api.test_v1 import assert_problem
from tests.app.api.test_v2 import assert_error

JSON = {"content-type": "application/json"}
Z4 = [0.0, 0.0, 0.0, 0.0]
BIG = "1" * 5000  # past Python's 4300-digit limit for int(str)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/encode", f'{{"arrays": [[{BIG}]]}}'),
        ("/v1/score", f'{{"images": [], "x": {BIG}}}'),
        ("/v1/decode", f'{{"latents": [[{BIG}, 0, 0, 0]]}}'),
        ("/v1/interpolate", f'{{"latents": [[{BIG}, 0, 0, 0], [0, 0, 0, 0]]}}'),
        ("/v1/traverse", f'{{"latents": [[-{BIG}, 0, 0, 0]]}}'),
    ],
)
def test_a_json_integer_of_thousands_of_digits_is_a_400_not_a_500(client: TestClient, path: str, body: str) -> None:
    """[1] Python's int() refuses more than 4300 digits; every v1 JSON body answers it as invalid JSON."""
    assert_problem(client.post(path, content=body, headers=JSON), 400, "Invalid JSON",
                   "the body is not valid JSON (an integer of 5000 digits is out of range)")  # fmt: skip


def test_v2_refuses_huge_integers_too(client: TestClient) -> None:
    body = f'{{"inputs": [{{"name": "z", "datatype": "FP32", "shape": [1, 4], "data": [{BIG}, 0, 0, 0]}}]}}'
    r = client.post("/v2/models/digits-decoder/infer", content=body)
    assert r.status_code == 400 and "number out of range" in r.json()["error"], r.text
    body = '{"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 4], "data": [1' + "0" * 30 + ", 0, 0, 0]}]}"
    assert_error(client.post("/v2/models/digits-decoder/infer", content=body), 400,
                 "input 'z': data is not a rectangular list of FP32 values")  # fmt: skip


@pytest.mark.parametrize(
    ("latent", "where"),
    [
        ([0.0, 0.0, 0.0, True], "latents.0.3"),
        (["0", 0.0, 0.0, 0.0], "latents.0.0"),
        ([0.0, None, 0.0, 0.0], "latents.0.1"),
    ],
)
def test_latents_hold_numbers_only(client: TestClient, latent: list[Any], where: str) -> None:
    """[13] strings and booleans are refused, never cast, as arrays refuse them; ints are numbers."""
    assert_problem(client.post("/v1/decode", json={"latents": [latent]}), 422, "Invalid request",
                   f"body {where}: Input should be a valid number")  # fmt: skip
    assert_problem(client.post("/v1/traverse", json={"latents": [latent]}), 422, "Invalid request",
                   f"body {where}: Input should be a valid number")  # fmt: skip
    assert client.post("/v1/decode", json={"latents": [[0, 1, -1, 0]]}).status_code == 200


@pytest.mark.parametrize("bad", [True, "0.5"])
def test_v2_data_and_parameters_are_not_cast(client: TestClient, bad: Any) -> None:
    """[11, 12] v2.md: values of another type are refused, never cast."""
    data = [0.0] * 783 + [bad]
    image = {"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": data}
    assert_error(client.post("/v2/models/digits-encoder/infer", json={"inputs": [image]}), 400,
                 "input 'image': data is not a rectangular list of FP32 values")  # fmt: skip
    z = {"name": "z", "datatype": "FP32", "shape": [1, 4], "data": [0.0, 0.0, 0.0, bad]}
    assert_error(client.post("/v2/models/digits-decoder/infer", json={"inputs": [z]}), 400,
                 "input 'z': data is not a rectangular list of FP32 values")  # fmt: skip
    image["data"] = [0.0] * 784
    for name, message in [
        ("importance_samples", "Input should be a valid integer"),
        ("seed", "Input should be a valid integer"),
        ("false_positive_rate", "Input should be a valid number"),
    ]:
        r = client.post("/v2/models/digits-scorer/infer", json={"inputs": [image], "parameters": {name: bad}})
        assert r.status_code == 400 and r.json()["error"].startswith(f"parameter {name}: {message}"), r.text
    shape = {**image, "shape": [1, 1, 28, bad]}
    r = client.post("/v2/models/digits-encoder/infer", json={"inputs": [shape]})
    assert r.status_code == 400 and "inputs.0.shape.3: Input should be a valid integer" in r.json()["error"], r.text


def test_v2_nan_rate_is_refused(client: TestClient) -> None:
    image = {"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [0.0] * 784}
    body = json.dumps({"inputs": [image], "parameters": {"false_positive_rate": float("nan")}})  # NaN: JSON5-ish
    r = client.post("/v2/models/digits-scorer/infer", content=body)
    assert r.status_code == 400 and "false_positive_rate" in r.json()["error"], r.text


@pytest.mark.parametrize(
    ("query", "name"),
    [("/v1/score?false_positive_rate=nan", "false_positive_rate"), ("/v1/samples?temperature=nan", "temperature"),
     ("/v1/samples?temperature=inf", "temperature"), ("/v1/traverse?low=-inf", "low")],
)  # fmt: skip
def test_nan_and_infinite_query_values_are_named_as_such(client: TestClient, query: str, name: str, digit_pngs) -> None:
    """[23] not "Input should be less than 1": NaN compares false with every bound."""
    r = (client.get(query) if "samples" in query else
         client.post(query, content=digit_pngs[0], headers={"content-type": "image/png"}))  # fmt: skip
    assert_problem(r, 422, "Invalid request", f"query {name}: Input should be a finite number")


def test_images_and_arrays_together_are_refused(client: TestClient, digit_pngs) -> None:
    """[8] one of them would be silently ignored."""
    body = {"images": [base64.b64encode(digit_pngs[0]).decode()], "arrays": [[[0.5] * 28] * 28]}
    for path in ("/v1/encode", "/v1/score", "/v1/reconstruct", "/v1/traverse"):
        assert_problem(client.post(path, json=body), 422, "Invalid input", 'send "images" or "arrays", not both')


def test_zero_latents_is_the_zero_images_answer(client: TestClient) -> None:
    """[25] api.md: zero is one answer on every endpoint and in every form."""
    for path in ("/v1/decode", "/v1/interpolate", "/v1/traverse"):
        assert_problem(client.post(path, json={"latents": []}), 422, "Invalid input",
                       "the request holds no latents; send 1 to 8")  # fmt: skip
    z = {"name": "z", "datatype": "FP32", "shape": [0, 4], "data": []}
    assert_error(client.post("/v2/models/digits-decoder/infer", json={"inputs": [z]}), 400,
                 "the request holds no latents; send 1 to 8")  # fmt: skip


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_base64_as_tools_write_it(client: TestClient, digit_pngs) -> None:
    """[10] MIME line breaks (base64 without -w0, openssl), spaces, no padding, the URL-safe alphabet."""
    png = digit_pngs[0] + b"\0" * ((1 - len(digit_pngs[0])) % 3)  # bytes after IEND: padding to drop
    expected = client.post("/v1/encode", json={"images": [_b64(png)]}).json()["results"]
    forms = {
        "mime": "\r\n".join(textwrap.wrap(_b64(png), 76)),
        "openssl": "\n".join(textwrap.wrap(_b64(png), 64)) + "\n",
        "spaces": f"  {_b64(png)}  ",
        "unpadded": _b64(png).rstrip("="),
        "urlsafe": base64.urlsafe_b64encode(png).decode(),
    }
    assert forms["unpadded"] != _b64(png) and set("-_") & set(forms["urlsafe"])
    for name, text in forms.items():
        r = client.post("/v1/encode", json={"images": [text]})
        assert r.status_code == 200 and r.json()["results"] == expected, (name, r.text)


def _multipart(parts: list[tuple[str, bytes, bool]]) -> tuple[bytes, dict[str, str]]:
    """A multipart body of (name, value, is_file) parts."""
    chunks = []
    for name, value, is_file in parts:
        filename = f'; filename="{name}.png"' if is_file else ""
        kind = "Content-Type: image/png\r\n" if is_file else ""
        chunks.append(f'--b\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n{kind}\r\n'.encode() + value)
    return b"\r\n".join(chunks) + b"\r\n--b--\r\n", {"content-type": "multipart/form-data; boundary=b"}


def test_multipart_text_fields_are_not_images(client: TestClient, digit_pngs) -> None:
    """[9, 24] text fields are ignored, and their own limits are named when passed."""
    body, headers = _multipart([(f"note{i}", b"x", False) for i in range(300)] + [("file", digit_pngs[0], True)])
    r = client.post("/v1/encode", content=body, headers=headers)
    assert r.status_code == 200 and len(r.json()["results"]) == 1, r.text
    body, headers = _multipart([(f"note{i}", b"x", False) for i in range(1001)] + [("file", digit_pngs[0], True)])
    assert_problem(client.post("/v1/encode", content=body, headers=headers), 400, "Invalid multipart body",
                   "the multipart body has more than 1000 text fields, the limit; text fields are ignored: send "
                   "images as file parts (with a filename)")  # fmt: skip
    body, headers = _multipart([("note", b"x" * (1024 * 1024 + 1), False), ("file", digit_pngs[0], True)])
    assert_problem(client.post("/v1/encode", content=body, headers=headers), 400, "Invalid multipart body",
                   "a text field of the multipart body is over 1048576 bytes, the limit per field; send images as "
                   "file parts (with a filename)")  # fmt: skip


def test_v1_takes_compressed_bodies_within_the_body_limit(client: TestClient, digit_pngs) -> None:
    """[18] gzip and deflate as v2 takes them, the limit applying after decompression too."""
    png = {"content-type": "image/png"}
    expected = client.post("/v1/encode", content=digit_pngs[0], headers=png).json()
    for encoding, packed in [("gzip", gzip.compress(digit_pngs[0])), ("deflate", zlib.compress(digit_pngs[0]))]:
        r = client.post("/v1/encode", content=packed, headers={**png, "content-encoding": encoding})
        assert r.status_code == 200 and r.json() == expected, r.text
    body = gzip.compress(json.dumps({"latents": [Z4]}).encode())
    assert client.post("/v1/decode", content=body, headers={**JSON, "content-encoding": "gzip"}).status_code == 200
    assert_problem(client.post("/v1/encode", content=digit_pngs[0], headers={**png, "content-encoding": "br"}), 415,
                   "Unsupported media type", "Content-Encoding 'br' is not supported; use gzip or deflate")  # fmt: skip
    assert_problem(client.post("/v1/encode", content=b"not gzip", headers={**png, "content-encoding": "gzip"}), 400,
                   "Invalid body", "the body is not valid gzip data (Error -3 while decompressing data: incorrect "
                   "header check)")  # fmt: skip


def test_v1_compressed_bomb_is_a_413(repository) -> None:
    from app.main import create_app
    from app.settings import Settings

    with TestClient(create_app(Settings(model_repository=repository, max_body_bytes=4096))) as c:
        bomb = gzip.compress(b" " * 100_000)
        assert_problem(c.post("/v1/encode", content=bomb, headers={"content-type": "image/png",
                                                                   "content-encoding": "gzip"}),
                       413, "Payload too large",
                       "the decompressed body is over the limit of 4096 bytes (VAESERVE_MAX_BODY_BYTES)")  # fmt: skip


@pytest.mark.parametrize(
    ("where", "parameter", "message"),
    [
        ("outputs", {"classification": 3}, "output 'mean': parameter 'classification': the classification "
         "extension is not supported; ask for the raw output"),
        ("outputs", {"shared_memory_region": "r", "shared_memory_byte_size": 64}, "output 'mean': parameter "
         "'shared_memory_region': shared memory is not supported; send the data in the request"),
        ("inputs", {"shared_memory_region": "r", "shared_memory_byte_size": 3136}, "input 'image': parameter "
         "'shared_memory_region': shared memory is not supported; send the data in the request"),
    ],
)  # fmt: skip
def test_v2_extensions_it_does_not_implement_are_refused_by_name(
    client: TestClient, where: str, parameter: dict[str, Any], message: str
) -> None:
    """[20] an ignored extension parameter would answer something other than what was asked."""
    image: dict[str, Any] = {"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28], "parameters": {}}
    request: dict[str, Any] = {"inputs": [image], "outputs": [{"name": "mean", "parameters": {}}]}
    if where == "inputs":
        image["parameters"] = parameter
    else:
        image["data"] = np.zeros(784).tolist()
        request["outputs"][0]["parameters"] = parameter
    assert_error(client.post("/v2/models/digits-encoder/infer", json=request), 400, message)

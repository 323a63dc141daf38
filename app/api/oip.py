"""Open Inference Protocol tensors on the wire: JSON data and Triton's binary extension.

    POST /v2/models/mnist-vae-encoder/infer
    Inference-Header-Content-Length: 120          # length of the JSON header, in bytes
    {"inputs": [{"name": "image", "datatype": "FP32", "shape": [2, 1, 28, 28],
                 "parameters": {"binary_data_size": 6272}}]}<6272 raw little-endian bytes>

`parse_infer_request` turns a body into the request header and one numpy array per input;
`infer_response` puts each output either in the JSON ("data", flat, row-major) or after it
as raw bytes, when the request asks for binary data. Everything wrong with a request raises
a ServiceError (`refused`), which the v2 router answers as {"error": "..."}.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
from fastapi import Response
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.api.inputs import decimal_length
from app.errors import ServiceError
from app.tracing import traced
from model.preprocess import json_array

HEADER_LENGTH = "inference-header-content-length"
OCTET_STREAM = "application/octet-stream"

# The protocol's tensor data types this server takes; BYTES (length-prefixed strings) has no use here.
DATATYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(kind).newbyteorder("<")
    for name, kind in {
        "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
        "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
        "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    }.items()
}  # fmt: skip
UNSUPPORTED_DATATYPES = ("BYTES",)
Parameter = Any  # any JSON value: the protocol leaves parameters open (Triton's "headers" is an object)
# Tensor parameters of protocol extensions this server does not implement: refused by name,
# never ignored (an ignored one would answer something else than was asked).
_NO_SHARED_MEMORY = "shared memory is not supported; send the data in the request"
_UNSUPPORTED_TENSOR_PARAMETERS = {
    "shared_memory_region": _NO_SHARED_MEMORY,
    "shared_memory_byte_size": _NO_SHARED_MEMORY,
    "shared_memory_offset": _NO_SHARED_MEMORY,
    "classification": "the classification extension is not supported; ask for the raw output",
}


def refused(message: str, status: int = 400) -> ServiceError:
    """A request the protocol refuses; the v2 router answers it as {"error": message}."""
    return ServiceError(status, "invalid-inference-request", "Invalid inference request", message)


class _Wire(BaseModel):
    # strict: a shape of [true, "2"] is refused, not read as [1, 2]
    model_config = ConfigDict(extra="ignore", protected_namespaces=(), strict=True)


class RequestInput(_Wire):
    name: str = Field(examples=["image"])
    shape: list[int] = Field(examples=[[1, 1, 28, 28]])
    datatype: str = Field(examples=["FP32"])
    parameters: dict[str, Parameter] = {}
    data: list[Any] | None = Field(None, description="row-major values, flat or nested; absent with binary data")


class RequestOutput(_Wire):
    name: str = Field(examples=["mean"])
    parameters: dict[str, Parameter] = {}


class InferRequest(_Wire):
    id: str | None = None
    parameters: dict[str, Parameter] = {}
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Wire):
    name: str = Field(examples=["mean"])
    shape: list[int] = Field(examples=[[1, 16]])
    datatype: str = Field(examples=["FP32"])
    parameters: dict[str, Parameter] | None = None
    data: list[Any] | None = None


class InferResponse(_Wire):
    model_name: str = Field(examples=["mnist-vae-encoder"])
    model_version: str = Field(examples=["1"])
    id: str = Field(examples=["42"], description="the request's id, or the X-Request-ID of this request")
    outputs: list[ResponseOutput]


class ErrorResponse(_Wire):
    error: str = Field(examples=["unknown model 'mnist'; this server has mnist-vae-decoder, ..."])


class ServerMetadata(_Wire):
    name: str = Field(examples=["vaeserve"])
    version: str = Field(examples=["0.1.0"])
    extensions: list[str] = Field(examples=[["binary_tensor_data", "model_configuration", "parameters"]])


class ServerLive(_Wire):
    live: bool = Field(examples=[True])


class ServerReady(_Wire):
    ready: bool = Field(examples=[True])


class ModelReady(_Wire):
    name: str = Field(examples=["mnist-vae-encoder"])
    ready: bool = Field(examples=[True])


class TensorMetadata(_Wire):
    name: str = Field(examples=["image"])
    datatype: str = Field(examples=["FP32"])
    shape: list[int] = Field(examples=[[-1, 1, 28, 28]])


class ModelMetadata(_Wire):
    name: str = Field(examples=["mnist-vae-encoder"])
    versions: list[str] = Field(examples=[["1"]])
    platform: str = Field(examples=["onnxruntime_onnx"])
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ConfigTensor(_Wire):
    name: str = Field(examples=["image"])
    data_type: str = Field(examples=["TYPE_FP32"])
    dims: list[int] = Field(examples=[[1, 28, 28]], description="without the batch dimension")
    reshape: dict[str, list[int]] | None = Field(None, description="{'shape': []} for one value per image")


class ModelConfig(_Wire):
    """Triton's model configuration (config.pbtxt) as JSON, for tools that read it."""

    name: str = Field(examples=["mnist-vae-encoder"])
    platform: str = Field(examples=["onnxruntime_onnx"])
    backend: str = Field(examples=["onnxruntime"])
    max_batch_size: int = Field(examples=[256])
    input: list[ConfigTensor]
    output: list[ConfigTensor]
    parameters: dict[str, dict[str, str]] = Field(
        description="request parameters and their defaults", examples=[{"seed": {"string_value": "0"}}]
    )
    dynamic_batching: dict[str, int] | None = None


@traced("vaeserve.parse")
def parse_infer_request(body: bytes, header_length: str | None) -> tuple[InferRequest, dict[str, NDArray[Any]]]:
    """The JSON header and each input as an array of its shape and datatype."""
    if not body:
        raise refused("the request has no body")
    if header_length is None:
        header, binary = body, b""
    else:
        size = decimal_length(header_length)
        if size is None or not 0 < size <= len(body):
            raise refused(f"Inference-Header-Content-Length {header_length!r} is not a length within the body")
        header, binary = body[:size], body[size:]
    try:
        request = InferRequest.model_validate_json(header)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise refused(f"invalid inference request: {where}: {first['msg']}") from None
    arrays: dict[str, NDArray[Any]] = {}
    for output in request.outputs or ():
        _check_tensor_parameters(f"output {output.name!r}", output.parameters)
    offset = 0
    for tensor in request.inputs:
        if tensor.name in arrays:
            raise refused(f"input {tensor.name!r} is given twice")
        arrays[tensor.name], used = _input_array(tensor, binary, offset)
        offset += used
    if offset != len(binary):
        raise refused(f"the body has {len(binary) - offset} bytes past the inputs' binary data")
    return request, arrays


def _check_tensor_parameters(where: str, parameters: dict[str, Parameter]) -> None:
    for name, reason in _UNSUPPORTED_TENSOR_PARAMETERS.items():
        if name in parameters:
            raise refused(f"{where}: parameter {name!r}: {reason}")


def _input_array(tensor: RequestInput, binary: bytes, offset: int) -> tuple[NDArray[Any], int]:
    """One input's array, and how many bytes of the binary section it took."""
    where = f"input {tensor.name!r}"
    _check_tensor_parameters(where, tensor.parameters)
    dtype = DATATYPES.get(tensor.datatype)
    if dtype is None:
        if tensor.datatype in UNSUPPORTED_DATATYPES:
            raise refused(f"{where}: datatype {tensor.datatype} is not supported by this server; send "
                f"{', '.join(DATATYPES)}",
            )  # fmt: skip
        raise refused(f"{where}: datatype {tensor.datatype!r} is not a datatype of the protocol; send "
            f"{', '.join(DATATYPES)}",
        )  # fmt: skip
    if any(d < 0 for d in tensor.shape):
        raise refused(f"{where}: shape {tensor.shape} has a negative dimension")
    count = math.prod(tensor.shape)
    size = tensor.parameters.get("binary_data_size")
    if size is not None:
        if tensor.data is not None:
            raise refused(f"{where} has both binary_data_size and data")
        if not isinstance(size, int) or isinstance(size, bool) or size != count * dtype.itemsize:
            raise refused(f"{where}: binary_data_size {size!r} is not {count * dtype.itemsize} ({tensor.datatype} "
                f"{tensor.shape})",
            )  # fmt: skip
        if offset + size > len(binary):
            raise refused(f"{where}: the body ends before its {size} bytes of binary data")
        return np.frombuffer(binary, dtype, count, offset).reshape(tensor.shape), size
    if tensor.data is None:
        raise refused(f"{where} has neither data nor binary_data_size")
    values = _json_values(tensor.data, dtype, f"{where}: data is not a rectangular list of {tensor.datatype} values")
    if values.size != count:
        raise refused(f"{where}: data holds {values.size} values, shape {tensor.shape} needs {count}")
    return values.reshape(tensor.shape), 0


def _json_values(data: list[Any], dtype: np.dtype[Any], message: str) -> NDArray[Any]:
    """JSON numbers as `dtype`: booleans for BOOL, integers in range for the integer types, numbers
    within range for the floating-point types; anything else (strings, nulls, booleans among
    numbers, ragged lists, values the type cannot hold) is refused with `message`, never cast."""
    values = json_array(data)
    if values is None:
        raise refused(message)
    if values.size == 0:
        return values.astype(dtype)
    kinds = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}[dtype.kind]
    if values.dtype.kind not in kinds:
        raise refused(message)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if values.min() < info.min or values.max() > info.max:
            raise refused(message)
    elif dtype.kind == "f":
        finite = np.abs(values[np.isfinite(values)])
        if finite.size and finite.max() > np.finfo(dtype).max:
            raise refused(message)  # would overflow to infinity
    return values.astype(dtype)


def requested_outputs(request: InferRequest, available: list[str]) -> list[tuple[str, bool]]:
    """(name, as binary) for each output to send: those asked for, else all of them."""
    binary_default = request.parameters.get("binary_data_output") is True
    if request.outputs is None:
        return [(name, binary_default) for name in available]
    chosen = []
    for output in request.outputs:
        if output.name not in available:
            raise refused(f"output {output.name!r} is not one of {', '.join(available)}")
        chosen.append((output.name, output.parameters.get("binary_data", binary_default) is True))
    return chosen


def infer_response(
    head: dict[str, Any], outputs: list[tuple[str, bool]], arrays: dict[str, NDArray[Any]], datatypes: dict[str, str]
) -> Response:
    """The response: JSON, followed by the binary outputs' bytes when any was asked for as binary."""
    tensors, chunks = [], []
    for name, binary in outputs:
        array = np.ascontiguousarray(arrays[name], dtype=DATATYPES[datatypes[name]])
        tensor: dict[str, Any] = {"name": name, "datatype": datatypes[name], "shape": list(array.shape)}
        if binary:
            chunks.append(array.tobytes())
            tensor["parameters"] = {"binary_data_size": array.nbytes}
        else:
            tensor["data"] = array.ravel()
        tensors.append(tensor)
    header = orjson.dumps({**head, "outputs": tensors}, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return Response(header, media_type="application/json")
    return Response(
        header + b"".join(chunks),
        media_type=OCTET_STREAM,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )

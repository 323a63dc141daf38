"""The Open Inference Protocol (KServe v2 / Triton), with Triton's binary tensor extension.

Each bundle serves three v2 models, `<name>-encoder`, `<name>-decoder` and `<name>-scorer`
(app/api/v2_models.py); the wire format is app/api/oip.py. Every model route also answers under
`/versions/{model_version}`. Errors are {"error": "..."} (`render_error`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from app.api.deps import OperationsDep, RegistryDep, SettingsDep
from app.api.inputs import read_body
from app.api.oip import (
    HEADER_LENGTH,
    OCTET_STREAM,
    ConfigTensor,
    ErrorResponse,
    InferRequest,
    InferResponse,
    ModelConfig,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
    TensorMetadata,
    infer_response,
    parse_infer_request,
    refused,
    requested_outputs,
)
from app.api.v2_models import TensorSpec, V2Model, execute, resolve
from app.errors import ServiceError

router = APIRouter(prefix="/v2", tags=["v2"])
health_router = APIRouter(prefix="/v2", tags=["v2"])  # open, like /healthz: probes carry no keys

EXTENSIONS = ["binary_tensor_data", "model_configuration", "parameters"]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "model": ErrorResponse}
    for code, text in {
        400: "bad request",
        401: "VAESERVE_API_KEYS is set and no valid key was sent",
        404: "unknown model or version",
        408: "the body had not all arrived by the deadline (VAESERVE_REQUEST_TIMEOUT_S)",
        413: "over a limit",
        415: "unsupported Content-Encoding",
        503: "not ready or overloaded",
        504: "the request passed its deadline (VAESERVE_REQUEST_TIMEOUT_S)",
    }.items()
}
PLATFORM = "onnxruntime_onnx"  # the protocol's <project>_<format> convention, as Triton names it


def render_error(error: ServiceError) -> Response:
    """The protocol's error form, {"error": detail}; a request that is readable but invalid is a 400."""
    status = 400 if error.status == 422 else error.status
    return JSONResponse({"error": error.detail}, status, error.headers)


_VERSION_PARAMETER = {"name": "model_version", "in": "path", "required": True, "schema": {"type": "string"}}


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its local $defs substituted in place, to sit inside openapi.json."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            return (
                walk(defs[ref.rsplit("/", 1)[1]])
                if ref.startswith("#/$defs/")
                else {k: walk(v) for k, v in node.items()}
            )
        return [walk(v) for v in node] if isinstance(node, list) else node

    inlined: dict[str, Any] = walk(schema)
    return inlined


_INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "JSON tensors, or a JSON header of Inference-Header-Content-Length bytes and binary tensors",
        "content": {
            "application/json": {"schema": _inlined(InferRequest.model_json_schema())},
            OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


async def get_v2_model(request: Request, model_name: str, registry: RegistryDep) -> V2Model:
    return resolve(registry, model_name, request.path_params.get("model_version"))


V2ModelDep = Annotated[V2Model, Depends(get_v2_model)]


def _model_route(method: str, suffix: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a handler at /models/{model_name}<suffix> and at .../versions/{model_version}<suffix>."""
    extra = kwargs.pop("openapi_extra", {})
    responses = {**ERRORS, **kwargs.pop("responses", {})}

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        for path, more in (("", {}), ("/versions/{model_version}", {"parameters": [_VERSION_PARAMETER]})):
            router.add_api_route(
                f"/models/{{model_name}}{path}{suffix}", handler, methods=[method], responses=responses,
                openapi_extra={**extra, **more}, **kwargs,
            )  # fmt: skip
        return handler

    return register


@router.get(
    "", summary="Server metadata: name, version and the protocol extensions it supports.", response_model=ServerMetadata
)
async def get_server_metadata(request: Request) -> ServerMetadata:
    return ServerMetadata(name="vaeserve", version=request.app.version, extensions=EXTENSIONS)


# The protocol's own OpenAPI file names the path "/v2/": answered too, not redirected.
router.add_api_route("/", get_server_metadata, methods=["GET"], response_model=ServerMetadata, include_in_schema=False)


@health_router.get("/health/live", summary="Liveness: 200 while the process answers.", response_model=ServerLive)
async def get_server_live() -> ServerLive:
    return ServerLive(live=True)


@health_router.get(
    "/health/ready",
    summary="Readiness: 200 once every model is loaded and warmed up, 400 before (the protocol's 4xx).",
    response_model=ServerReady,
    responses={400: {"description": "not ready", "model": ErrorResponse}},
)
async def get_server_ready(request: Request) -> ServerReady:
    if request.app.state.registry is None:
        raise refused("models are still loading")
    return ServerReady(ready=True)


@_model_route("get", "", summary="Model metadata: its versions, inputs and outputs.", response_model=ModelMetadata)
async def get_model_metadata(v2: V2ModelDep, registry: RegistryDep) -> ModelMetadata:
    bundle = v2.model.manifest.name
    return ModelMetadata(
        name=v2.name,
        versions=[m.manifest.version for m in registry.all() if m.manifest.name == bundle],
        platform=PLATFORM,
        inputs=[TensorMetadata(**t.metadata()) for t in v2.inputs],
        outputs=[TensorMetadata(**t.metadata()) for t in v2.outputs],
    )


@_model_route(
    "get",
    "/ready",
    summary="Model readiness: 200 when the model (and version) is loaded; models load before the server is ready.",
    response_model=ModelReady,
)
async def get_model_ready(v2: V2ModelDep) -> ModelReady:
    return ModelReady(name=v2.name, ready=True)


@_model_route(
    "get",
    "/config",
    summary="The model's configuration in Triton's JSON form: max_batch_size, inputs, outputs, parameters.",
    response_model=ModelConfig,
    response_model_exclude_none=True,
)
async def get_model_config(v2: V2ModelDep, settings: SettingsDep) -> ModelConfig:
    return ModelConfig(
        name=v2.name,
        platform=PLATFORM,
        backend="onnxruntime",
        max_batch_size=settings.max_images_per_request,
        input=[_config_tensor(t) for t in v2.inputs],
        output=[_config_tensor(t) for t in v2.outputs],
        parameters={name: {"string_value": value} for name, value in v2.parameter_defaults.items()},
        dynamic_batching={"max_queue_delay_microseconds": settings.batch_max_delay_us} if settings.batching else None,
    )


def _config_tensor(t: TensorSpec) -> ConfigTensor:
    """Triton leaves the batch dimension out of dims; one value per image is dims [1] reshaped to []."""
    dims = list(t.shape[1:])
    return ConfigTensor(
        name=t.name, data_type=f"TYPE_{t.datatype}", dims=dims or [1], reshape=None if dims else {"shape": []}
    )


@_model_route(
    "post",
    "/infer",
    summary="Inference on tensors: JSON data, or binary data after a JSON header (Inference-Header-Content-Length).",
    response_model=InferResponse,
    openapi_extra=_INFER_BODY,
    responses={200: {"content": {OCTET_STREAM: {}}, "description": "JSON, or a JSON header and binary outputs"}},
)
async def infer(request: Request, v2: V2ModelDep, settings: SettingsDep, ops: OperationsDep) -> Response:
    body = await read_body(request, settings.max_body_bytes)  # decompressed as its Content-Encoding says
    inference, arrays = parse_infer_request(body, request.headers.get(HEADER_LENGTH))
    outputs = requested_outputs(inference, [t.name for t in v2.outputs])
    results = await execute(v2, arrays, inference.parameters, ops)
    # The request's id, else the request id of the logs: KServe's InferenceResponse requires one.
    head = {"model_name": v2.name, "model_version": v2.version, "id": inference.id or request.state.request_id}
    return infer_response(head, outputs, results, v2.datatypes)

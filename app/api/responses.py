"""The v1 errors each operation can give, as OpenAPI responses: RFC 9457 problem documents with
an example each, so /docs shows what a refusal looks like before anyone meets one.

    @router.post("/encode", responses=problems(*IMAGE_ERRORS))
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.errors import PROBLEM_JSON


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(examples=["urn:vaeserve:problem:invalid-image"])
    title: str = Field(examples=["Invalid image"])
    status: int = Field(examples=[400])
    detail: str = Field(examples=["image 1: not a decodable image"])


_WHEN: dict[int, tuple[str, str, str, str]] = {  # status: (when, slug, title, an example's detail)
    400: ("the body cannot be read", "invalid-image", "Invalid image", "image 1: not a decodable image"),
    401: ("VAESERVE_API_KEYS is set and no valid key was sent", "unauthorized", "Unauthorized",
          "an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>"),
    403: ("the admin API is off", "admin-off", "Forbidden", "the admin API is off: it needs VAESERVE_API_KEYS"),
    404: ("no such model or version", "model-not-found", "Model not found", "no model named 'fashion'"),
    408: ("the body had not all arrived by the deadline (VAESERVE_REQUEST_TIMEOUT_S); the connection is closed",
          "request-timeout", "Request timeout",
          "the request body did not arrive within 30 s (VAESERVE_REQUEST_TIMEOUT_S)"),
    409: ("the new repository was refused; the old models keep serving", "reload-refused", "Reload refused",
          "the old models keep serving: models/mnist-vae/2/decoder.onnx: sha256 does not match the manifest"),
    413: ("over a size limit", "body-too-large", "Payload too large",
          "the body is over the limit of 16777216 bytes (VAESERVE_MAX_BODY_BYTES)"),
    415: ("a content type this operation does not take", "unsupported-media-type", "Unsupported media type",
          "content type 'text/plain' is not supported here; send application/json"),
    422: ("values the model cannot take, or parameters out of range", "out-of-range", "Invalid request",
          "importance_samples must be between 1 and 5000 (VAESERVE_MAX_IMPORTANCE_SAMPLES), got 6000"),
    503: ("models still loading, or the server is overloaded: retry after Retry-After seconds", "overloaded",
          "Service unavailable", "the server is overloaded; retry later"),
    504: ("the request passed its deadline (VAESERVE_REQUEST_TIMEOUT_S)", "timeout", "Gateway timeout",
          "the request took longer than 30 s"),
}  # fmt: skip

MODEL_ERRORS = (401, 404, 503, 504)  # any operation on a model: keys, the model asked for, load, deadline
IMAGE_ERRORS = (400, *MODEL_ERRORS, 408, 413, 415, 422)  # and a body of images, which may arrive too slowly


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for `statuses`, each a problem document with its example."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted(statuses):
        when, slug, title, detail = _WHEN[status]
        example = {"type": f"urn:vaeserve:problem:{slug}", "title": title, "status": status, "detail": detail}
        responses[status] = {
            "description": when,
            "content": {PROBLEM_JSON: {"schema": Problem.model_json_schema(), "example": example}},
        }
    return responses


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "one of the server's VAESERVE_API_KEYS"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "the same key, in this header"},
}


def add_security(schema: dict[str, Any], keyed: set[tuple[str, str]]) -> dict[str, Any]:
    """Declare the key schemes, and that each (path, method) of `keyed` takes either (OpenAPI 3.1 §4.8.30)."""
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, method in keyed:
        operation = schema["paths"].get(path, {}).get(method)
        if operation is not None:
            operation["security"] = [{"bearer": []}, {"apiKey": []}]
    return schema


def problem_validation_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents every operation's 422 as its own `HTTPValidationError` JSON; this
    service answers a problem document (app/errors.py), and v2 a 400: document that instead."""
    ours = problems(422)[422]
    for path, item in schema["paths"].items():
        for operation in item.values():
            response = operation.get("responses", {}).get("422", {})
            media = response.get("content", {}).get("application/json", {})
            if media.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                if path == "/v2" or path.startswith("/v2/"):  # v2 says 400 {"error"}, declared with its routes
                    del operation["responses"]["422"]
                else:
                    operation["responses"]["422"] = ours
    for name in ("HTTPValidationError", "ValidationError"):
        schema.get("components", {}).get("schemas", {}).pop(name, None)
    return schema

"""The v1 latent-space tools: interpolate between two inputs, traverse latent dimensions.

A wire adapter like app/api/v1.py: parse images or latents (app/api/inputs.py read_codes),
call one operation, render its named result as JSON (base64 PNGs with their latents) or one
PNG (a strip, or a grid of one row per swept dimension).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from app.api import examples
from app.api.deps import ModelDep, OperationsDep, SettingsDep
from app.api.inputs import read_codes
from app.api.v1 import ERRORS, IMAGE_BODY, PNG, b64_png, json_response, model_ref
from app.serving.operations import Interpolated, Traversed
from model.preprocess import encode_png, make_grid
from wire import v1 as s

router = APIRouter(prefix="/v1", tags=["v1"])

Format = Annotated[Literal["json", "png"], Query(description="JSON with base64 PNGs and latents, or one PNG")]
_PNG_OR_JSON: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    200: {"content": {PNG: {}}, "description": "JSON, or one PNG with format=png"},
}


def _codes_body(description: str, json_examples: dict[str, Any]) -> dict[str, Any]:
    """IMAGE_BODY's forms, its JSON also taking {"latents": [...]}, with examples for the shipped model."""
    content = dict(IMAGE_BODY["requestBody"]["content"])
    schema = content["application/json"]["schema"]
    latents = {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
    content["application/json"] = {
        "schema": {**schema, "properties": {**schema["properties"], "latents": latents}},
        "examples": json_examples,
    }
    return {"requestBody": {"required": True, "description": description, "content": content}}


@router.post(
    "/interpolate",
    summary="Images along the path between two inputs' posterior means",
    response_model=s.InterpolateResponse,
    responses=_PNG_OR_JSON,
    openapi_extra=_codes_body(
        "Two images (any form /v1/encode takes), or JSON with two latents.", examples.INTERPOLATE
    ),
)
async def interpolate_inputs(
    request: Request,
    model: ModelDep,
    settings: SettingsDep,
    ops: OperationsDep,
    steps: Annotated[int, Query(description="images along the path, both ends included")] = 8,
    method: Annotated[s.PathMethod, Query(description="a straight line, or spherical (slerp)")] = "slerp",
    format: Format = "json",
) -> Any:
    """Linear or spherical interpolation between two codes; a PNG strip with format=png."""
    codes = await read_codes(request, model.manifest.input, settings)
    path = await ops.interpolate(model, codes, steps=steps, method=method)
    if format == "png":
        return Response(encode_png(make_grid(path.images, columns=len(path.images))), media_type=PNG)
    return json_response({**model_ref(model), **_interpolated(path)})


def _interpolated(path: Interpolated) -> dict[str, Any]:
    return {"method": path.method, "t": path.t, "latents": path.latents, "images": [b64_png(i) for i in path.images]}


@router.post(
    "/traverse",
    summary="Sweep latent dimensions of one input's posterior mean",
    response_model=s.TraverseResponse,
    responses=_PNG_OR_JSON,
    openapi_extra=_codes_body("One image (any form /v1/encode takes), or JSON with one latent.", examples.TRAVERSE),
)
async def traverse_dimensions(
    request: Request,
    model: ModelDep,
    settings: SettingsDep,
    ops: OperationsDep,
    dimensions: Annotated[
        list[int] | None, Query(description="dimensions to sweep, one row each; the most active ones when absent")
    ] = None,
    low: Annotated[float, Query(allow_inf_nan=False, description="first value, in prior standard deviations")] = -3.0,
    high: Annotated[float, Query(allow_inf_nan=False, description="last value, in prior standard deviations")] = 3.0,
    steps: Annotated[int, Query(description="values from low to high, both included")] = 7,
    format: Format = "json",
) -> Any:
    """Each dimension set to `steps` values from low to high, the others kept; a PNG grid with format=png."""
    codes = await read_codes(request, model.manifest.input, settings)
    swept = await ops.traverse(model, codes, dimensions=dimensions, low=low, high=high, steps=steps)
    if format == "png":
        grid = make_grid(swept.images.reshape(-1, *swept.images.shape[2:]), columns=len(swept.values))
        return Response(encode_png(grid), media_type=PNG)
    stats = model.manifest.latents
    return json_response({**model_ref(model), **_traversed(swept, None if stats is None else stats.variance)})


def _traversed(swept: Traversed, activity: list[float] | None) -> dict[str, Any]:
    rows = [
        {"dimension": d, "activity": None if activity is None else activity[d], "latents": swept.latents[i],
         "images": [b64_png(image) for image in swept.images[i]]}
        for i, d in enumerate(swept.dimensions)
    ]  # fmt: skip
    return {"base": swept.base, "values": swept.values, "dimensions": rows}

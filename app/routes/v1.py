"""The v1 API: encode, decode, samples, reconstruct, score, and what models are loaded.

Routes are thin: parse the input (app/inputs.py), run model/'s runtime off the event loop,
shape the answer (app/schemas.py). The maths lives in model/.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from fastapi import APIRouter, Query, Request, Response
from numpy.typing import NDArray

from app import schemas as s
from app.anomaly import decide, default_importance_samples
from app.deps import ModelDep, RegistryDep, SettingsDep, check_range
from app.errors import ProblemError, unsupported_media_type
from app.inputs import media_type, read_images, read_json
from app.registry import LoadedModel
from model.preprocess import encode_png, heatmap_png, make_grid
from model.runtime import ImageScores, sample_posterior

router = APIRouter(prefix="/v1", tags=["v1"])

PNG = "image/png"
_B64_PNG = "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAEElEQVR4nGNgGAWjYBTAAAAEHAABnw0JvAAAAABJRU5ErkJggg=="
IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One image as the raw body, several as multipart files, or JSON (base64 images or arrays).",
        "content": {
            PNG: {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "application/x-npy": {
                "schema": {"type": "string", "format": "binary", "description": "np.save of [N, C, H, W]"}
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "images": {"type": "array", "items": {"type": "string", "format": "byte"}},
                        "arrays": {"type": "array", "items": {"type": "array"}},
                    },
                },
                "example": {"images": [_B64_PNG]},
            },
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/problem+json": {}}}
    for code, text in {
        400: "bad body or image",
        404: "unknown model",
        413: "over a limit",
        415: "unsupported content type",
        422: "invalid values",
    }.items()
}
Seed = Annotated[int, Query(ge=0, le=2**63 - 1, description="seed of the noise; the same seed gives the same answer")]
ImportanceSamples = Annotated[int | None, Query(description="K, samples from q(z|x); the calibration's K when absent")]
Heatmap = Annotated[bool, Query(description="also return a per-pixel anomaly heatmap (PNG) per image")]


def _b64_png(image: NDArray[np.float32]) -> str:
    return base64.b64encode(encode_png(image)).decode()


def _heatmaps(scores: ImageScores, wanted: bool) -> list[str | None]:
    """Base64 PNG heatmaps of the per-pixel NLL, encoded only when asked for."""
    if not wanted:
        return [None] * len(scores.pixel_nll)
    return [base64.b64encode(heatmap_png(values)).decode() for values in scores.pixel_nll]


def _scores_out(scores: ImageScores, i: int) -> dict[str, float]:
    return {name: float(getattr(scores, name)[i]) for name in s.ImageScores.model_fields}


def json_response(payload: dict[str, Any]) -> Response:
    """JSON straight from numpy arrays with orjson, past pydantic: these answers are built
    here from validated values, and response_model keeps documenting their schema."""
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def _ref(model: LoadedModel) -> dict[str, str]:
    return {"model": model.manifest.name, "version": model.manifest.version}


@router.post("/encode", response_model=s.EncodeResponse, openapi_extra=IMAGE_BODY, responses=ERRORS)
async def encode_images(
    request: Request,
    model: ModelDep,
    settings: SettingsDep,
    sample: Annotated[bool, Query(description="also return one draw z from q(z|x)")] = False,
    seed: Seed = 0,
) -> Response:
    """Encode images to the mean and log-variance of q(z|x)."""
    images = await read_images(request, model.manifest.input, settings)
    mean, log_var = await model.encode(images)
    z = sample_posterior(mean, log_var, seed) if sample else None
    results = [{"mean": mean[i], "log_var": log_var[i], "z": None if z is None else z[i]} for i in range(len(images))]
    return json_response({**_ref(model), "latent_dim": model.manifest.latent_dim, "results": results})


@router.post(
    "/decode",
    response_model=s.ImagesResponse,
    responses={**ERRORS, 200: {"content": {PNG: {}}, "description": "JSON, or a PNG with Accept: image/png"}},
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": s.DecodeRequest.model_json_schema()}}}},
)
async def decode_latents(request: Request, model: ModelDep, settings: SettingsDep) -> Any:
    """Decode latents into images: JSON with base64 PNGs or arrays, or a PNG with Accept: image/png."""
    if media_type(request) != "application/json":
        raise unsupported_media_type(media_type(request), "application/json")
    body = s.DecodeRequest.model_validate(await read_json(request, settings.max_body_bytes))
    check_range("number of latents", len(body.latents), 1, settings.max_images_per_request)
    z = _rectangular(body.latents, model.manifest.latent_dim)
    images = await model.decode(z)
    if PNG in request.headers.get("accept", ""):
        grid = images[0] if len(images) == 1 else make_grid(images)
        return Response(encode_png(grid), media_type=PNG)
    if body.format == "array":
        return json_response({**_ref(model), "images": None, "arrays": images})
    return json_response({**_ref(model), "images": [_b64_png(image) for image in images], "arrays": None})


def _rectangular(latents: list[list[float]], dim: int) -> NDArray[np.float32]:
    for i, row in enumerate(latents):
        if len(row) != dim:
            raise ProblemError(
                422, "invalid-input", "Invalid input", f"latent {i} has {len(row)} values, the model takes {dim}"
            )
    return np.asarray(latents, dtype=np.float32)


@router.get(
    "/samples",
    response_model=s.SamplesResponse,
    responses={**ERRORS, 200: {"content": {PNG: {}}, "description": "a PNG grid, or JSON with format=json"}},
)
async def get_samples(
    model: ModelDep,
    settings: SettingsDep,
    n: Annotated[int, Query(description="how many samples")] = 16,
    seed: Seed = 0,
    temperature: Annotated[float, Query(gt=0, le=10, description="scale of the prior's standard deviation")] = 1.0,
    format: Annotated[Literal["png", "json"], Query(description="a PNG grid, or JSON")] = "png",
) -> Any:
    """Draw n images from the prior: a PNG grid, or JSON with base64 PNGs and their latents."""
    check_range("n", n, 1, settings.max_samples)
    z = model.runtime.sample_latents(n, seed, temperature)
    images = await model.decode(z)
    if format == "png":
        return Response(encode_png(make_grid(images)), media_type=PNG)
    return json_response(
        {**_ref(model), "seed": seed, "temperature": temperature, "images": [_b64_png(image) for image in images],
         "arrays": None, "latents": z}
    )  # fmt: skip


@router.post("/reconstruct", response_model=s.ReconstructResponse, openapi_extra=IMAGE_BODY, responses=ERRORS)
async def reconstruct_images(
    request: Request,
    model: ModelDep,
    settings: SettingsDep,
    importance_samples: ImportanceSamples = None,
    seed: Seed = 0,
    format: Annotated[Literal["png", "array"], Query(description="base64 PNGs or pixel arrays")] = "png",
    heatmap: Heatmap = False,
) -> Response:
    """Reconstruct images from their posterior mean, with their scores."""
    k = default_importance_samples(model.manifest, importance_samples, settings.max_importance_samples)
    images = await read_images(request, model.manifest.input, settings)
    scores = await model.score(images, k, seed)
    recon = scores.reconstructions  # decoded from the posterior mean by the same call
    heatmaps = _heatmaps(scores, heatmap)
    results = [
        {
            "image": _b64_png(recon[i]) if format == "png" else None,
            "array": recon[i] if format == "array" else None,
            "scores": _scores_out(scores, i),
            "heatmap": heatmaps[i],
        }
        for i in range(len(images))
    ]
    return json_response({**_ref(model), "importance_samples": k, "seed": seed, "results": results})


@router.post("/score", response_model=s.ScoreResponse, openapi_extra=IMAGE_BODY, responses=ERRORS)
async def score_images(
    request: Request,
    model: ModelDep,
    settings: SettingsDep,
    importance_samples: ImportanceSamples = None,
    seed: Seed = 0,
    score: Annotated[s.ScoreName | None, Query(description="decision score; the calibrated one when absent")] = None,
    false_positive_rate: Annotated[
        float | None, Query(gt=0, lt=1, description="threshold at this rate on the calibration scores")
    ] = None,
    heatmap: Heatmap = False,
) -> Response:
    """Score images for anomalies: all scores, the threshold, a p-value and the decision."""
    k = default_importance_samples(model.manifest, importance_samples, settings.max_importance_samples)
    images = await read_images(request, model.manifest.input, settings)
    scores = await model.score(images, k, seed)
    decision = decide(model.manifest, scores, score, false_positive_rate)
    values, threshold, p = decision.values, decision.threshold, decision.p_values
    heatmaps = _heatmaps(scores, heatmap)
    results = [
        {
            **_scores_out(scores, i),
            "score": values[i],
            "p_value": None if p is None else p[i],
            "is_anomaly": None if threshold is None else bool(values[i] > threshold),
            "heatmap": heatmaps[i],
        }
        for i in range(len(values))
    ]
    return json_response(
        {**_ref(model), "importance_samples": k, "seed": seed, "score": decision.score, "threshold": threshold,
         "false_positive_rate": decision.false_positive_rate, "results": results}
    )  # fmt: skip


def _summary(model: LoadedModel, default: bool) -> dict[str, Any]:
    m = model.manifest
    cal = m.calibration
    return {
        "name": m.name,
        "version": m.version,
        "default": default,
        "description": m.description,
        "created": m.created,
        "input": m.input,
        "latent_dim": m.latent_dim,
        "likelihood": m.likelihood.kind,
        "metrics": m.metrics,
        "quantization": m.quantization,
        "calibration": None
        if cal is None
        else s.CalibrationSummary(
            score=cal.score,
            threshold=cal.threshold,
            false_positive_rate=cal.false_positive_rate,
            split_size=cal.split_size,
            importance_samples=cal.importance_samples,
        ),
    }


@router.get("/models", response_model=s.ModelList)
async def list_models(registry: RegistryDep) -> s.ModelList:
    """List the loaded models with their metrics and calibration."""
    return s.ModelList(models=[s.ModelSummary(**_summary(m, m is registry.default)) for m in registry.all()])


@router.get("/models/{name}", response_model=s.ModelDetail, responses=ERRORS)
async def get_model(name: str, registry: RegistryDep, version: str | None = None) -> s.ModelDetail:
    """Describe one model (its highest version unless `version` is given)."""
    model = registry.get(name, version)
    m = model.manifest
    return s.ModelDetail(
        **_summary(model, model is registry.default),
        versions=[v.manifest.version for v in registry.all() if v.manifest.name == name],
        parameters=m.training.parameters if m.training else None,
        dataset=m.dataset.source if m.dataset else None,
        files={file: entry.sha256 for file, entry in m.files.items()},
    )

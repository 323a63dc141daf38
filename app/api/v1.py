"""The v1 API: encode, decode, samples, reconstruct, score, and what models are loaded.

A wire adapter: each handler parses the request (app/api/inputs.py), calls one operation
(app/serving/operations.py) and renders its named result as JSON or PNG (wire/v1.py).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from fastapi import APIRouter, Query, Request, Response
from numpy.typing import NDArray

from app.api import examples
from app.api.deps import ModelDep, OperationsDep, RegistryDep, SettingsDep
from app.api.inputs import media_type, read_images, read_json
from app.api.responses import IMAGE_ERRORS, MODEL_ERRORS, problems
from app.errors import ServiceError, too_much_output, unsupported_media_type
from app.serving.operations import Scored
from app.serving.registry import LoadedModel
from model import localise
from model.bundle import InputSpec, LatentStatistics
from model.latents import ACTIVE_VARIANCE, active_dimensions
from model.preprocess import encode_png, heatmap_png, make_grid
from model.runtime import ScoreBatch
from model.scores import DEFAULT_IMPORTANCE_SAMPLES
from wire import v1 as s

router = APIRouter(prefix="/v1", tags=["v1"])

PNG = "image/png"
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
                "examples": {
                    "images": {
                        "summary": "a 3 and a 7 (base64 PNGs)",
                        "value": {"images": [examples.THREE, examples.SEVEN]},
                    },
                    "arrays": {
                        "summary": "one blank 28 x 28 image as pixel arrays",
                        "value": {"arrays": [[[[0.0] * 28] * 28]]},
                    },
                },
            },
        },
    }
}
ERRORS = problems(*IMAGE_ERRORS)  # of the operations on images (and decode's JSON)
Seed = Annotated[int, Query(ge=0, le=2**63 - 1, description="seed of the noise; the same seed gives the same answer")]
ImportanceSamples = Annotated[int | None, Query(description="K, samples from q(z|x); the calibration's K when absent")]
Heatmap = Annotated[bool, Query(description="also return a per-pixel anomaly heatmap (PNG) per image, on the "
                                "calibration's scale: bright at twice its pixel threshold")]  # fmt: skip
Mask = Annotated[bool, Query(
    description="also return per image a binary PNG of the pixels over the calibration's pixel threshold, empty "
    "when the image is judged normal (422 for a bundle without a pixel threshold)",
    openapi_examples={"mask": {"summary": "with a mask per image", "value": True}},
)]  # fmt: skip
Overlay = Annotated[bool, Query(
    description="also return per image the input with its heatmap laid over it (RGB PNG)",
    openapi_examples={"overlay": {"summary": "with an overlay per image", "value": True}},
)]  # fmt: skip


def b64_png(image: NDArray[np.float32]) -> str:
    return base64.b64encode(encode_png(image)).decode()


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode()


def _heatmaps(model: LoadedModel, scores: ScoreBatch, wanted: bool) -> list[str | None]:
    """Base64 PNG heatmaps of the per-pixel NLL summed over channels, encoded only when asked for:
    on the calibration's scale (bright at twice its pixel threshold), or, for a bundle without
    one, each from dark (0) to bright (its own largest value)."""
    if not wanted:
        return [None] * len(scores.pixel_nll)
    cal = model.manifest.calibration
    threshold = None if cal is None else cal.pixel_threshold
    maps = localise.pixel_maps(scores.pixel_nll)
    if threshold is None:
        return [_b64(heatmap_png(m)) for m in maps]
    return [_b64(localise.heatmap_png(m, threshold)) for m in maps]


def _png_bound(spec: InputSpec) -> int:
    """The most bytes one base64 RGB PNG of the model's size can take: raw rows, zlib's
    stored-block overhead (5 bytes per 64 KiB) and the chunks' headers, times 4/3."""
    raw = spec.height * (3 * spec.width + 1)
    return (raw + 5 * (raw // 65535 + 1) + 128) * 4 // 3 + 4


def _check_output(images: int, pngs: int, spec: InputSpec, limit: int) -> None:
    """Maps, masks and overlays add PNGs of the model's size to the answer: keep them, at their
    largest, within the limit a request body has."""
    bound = images * pngs * _png_bound(spec)
    if bound > limit:
        raise too_much_output(images, pngs, bound, limit)


def _scores_out(scores: ScoreBatch, i: int) -> dict[str, float]:
    return {name: float(scores[name][i]) for name in s.ImageScores.model_fields}


def json_response(payload: dict[str, Any]) -> Response:
    """JSON straight from numpy arrays with orjson, past pydantic: these answers are built
    here from validated values, and response_model keeps documenting their schema."""
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def model_ref(model: LoadedModel) -> dict[str, str]:
    return {"model": model.manifest.name, "version": model.manifest.version}


@router.post(
    "/encode",
    summary="Encode images to the mean and log-variance of q(z|x)",
    response_model=s.EncodeResponse,
    openapi_extra=IMAGE_BODY,
    responses=ERRORS,
)
async def encode_images(
    request: Request,
    model: ModelDep,
    settings: SettingsDep,
    ops: OperationsDep,
    sample: Annotated[bool, Query(description="also return one draw z from q(z|x)")] = False,
    seed: Seed = 0,
) -> Response:
    images = await read_images(request, model.manifest.input, settings)
    enc = await ops.encode(model, images, sample=sample, seed=seed)
    z = enc.z
    results = [{"mean": m, "log_var": v, "z": None if z is None else z[i]}
               for i, (m, v) in enumerate(zip(enc.mean, enc.log_var, strict=True))]  # fmt: skip
    return json_response({**model_ref(model), "latent_dim": model.manifest.latent_dim, "results": results})


@router.post(
    "/decode",
    summary="Decode latents into images",
    response_model=s.ImagesResponse,
    responses={**ERRORS, 200: {"content": {PNG: {}}, "description": "JSON, or a PNG with Accept: image/png"}},
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": s.DecodeRequest.model_json_schema(),
                    "examples": {
                        "images": {
                            "summary": "the posterior means of a 1 and a 7, as base64 PNGs",
                            "value": {"latents": [examples.ONE_MEAN, examples.SEVEN_MEAN]},
                        },
                        "arrays": {
                            "summary": "the prior's mean, as pixel arrays",
                            "value": {"latents": [[0.0] * 16], "format": "array"},
                        },
                    },
                }
            }
        }
    },
)
async def decode_latents(request: Request, model: ModelDep, settings: SettingsDep, ops: OperationsDep) -> Any:
    """JSON with base64 PNGs or arrays, or one PNG (a grid for several) with Accept: image/png."""
    if media_type(request) != "application/json":
        raise unsupported_media_type(media_type(request), "application/json")
    body = s.DecodeRequest.model_validate(await read_json(request, settings.max_body_bytes))
    images = await ops.decode(model, _rectangular(body.latents, model.manifest.latent_dim))
    if PNG in request.headers.get("accept", ""):
        grid = images[0] if len(images) == 1 else make_grid(images)
        return Response(encode_png(grid), media_type=PNG)
    if body.format == "array":
        return json_response({**model_ref(model), "images": None, "arrays": images})
    return json_response({**model_ref(model), "images": [b64_png(image) for image in images], "arrays": None})


def _rectangular(latents: list[list[float]], dim: int) -> NDArray[np.float32]:
    for i, row in enumerate(latents):
        if len(row) != dim:
            raise ServiceError(
                422, "invalid-input", "Invalid input", f"latent {i} has {len(row)} values, the model takes {dim}"
            )
    return np.asarray(latents, dtype=np.float64)  # range-checked before the cast to float32 (model/runtime.py)


@router.get(
    "/samples",
    summary="Draw n images from the prior",
    response_model=s.SamplesResponse,
    responses={**problems(*MODEL_ERRORS, 422), 200: {"content": {PNG: {}}, "description": "a PNG grid, or JSON"}},
)
async def get_samples(
    model: ModelDep,
    ops: OperationsDep,
    n: Annotated[int, Query(description="how many samples")] = 16,
    seed: Seed = 0,
    temperature: Annotated[
        float, Query(gt=0, le=10, allow_inf_nan=False, description="scale of the prior's standard deviation")
    ] = 1.0,
    format: Annotated[Literal["png", "json"], Query(description="a PNG grid, or JSON")] = "png",
) -> Any:
    """A PNG grid, or JSON with base64 PNGs and their latents; the same seed gives the same answer."""
    sampled = await ops.sample(model, n, seed=seed, temperature=temperature)
    if format == "png":
        return Response(encode_png(make_grid(sampled.images)), media_type=PNG)
    return json_response(
        {**model_ref(model), "seed": seed, "temperature": temperature, "images": [b64_png(i) for i in sampled.images],
         "arrays": None, "latents": sampled.latents}
    )  # fmt: skip


@router.post(
    "/reconstruct",
    summary="Reconstruct images from their posterior mean, with their scores",
    response_model=s.ReconstructResponse,
    openapi_extra=IMAGE_BODY,
    responses=ERRORS,
)
async def reconstruct_images(
    request: Request,
    model: ModelDep,
    settings: SettingsDep,
    ops: OperationsDep,
    importance_samples: ImportanceSamples = None,
    seed: Seed = 0,
    format: Annotated[Literal["png", "array"], Query(description="base64 PNGs or pixel arrays")] = "png",
    heatmap: Heatmap = False,
) -> Response:
    images = await read_images(request, model.manifest.input, settings)
    _check_output(len(images), int(heatmap), model.manifest.input, settings.max_body_bytes)
    scored = await ops.reconstruct(model, images, importance_samples=importance_samples, seed=seed)
    recon = scored.scores.reconstructions  # decoded from the posterior mean by the same call
    heatmaps = _heatmaps(model, scored.scores, heatmap)
    results = [
        {
            "image": b64_png(recon[i]) if format == "png" else None,
            "array": recon[i] if format == "array" else None,
            "scores": _scores_out(scored.scores, i),
            "heatmap": heatmaps[i],
        }
        for i in range(len(images))
    ]
    return json_response({**model_ref(model), **_run(scored), "results": results})


@router.post(
    "/score",
    summary="Score images for anomalies: every score, the threshold, a p-value and the decision",
    response_model=s.ScoreResponse,
    openapi_extra=IMAGE_BODY,
    responses=ERRORS,
)
async def score_images(
    request: Request,
    model: ModelDep,
    settings: SettingsDep,
    ops: OperationsDep,
    importance_samples: ImportanceSamples = None,
    seed: Seed = 0,
    score: Annotated[s.ScoreName | None, Query(description="decision score; the calibrated one when absent")] = None,
    false_positive_rate: Annotated[
        float | None,
        Query(gt=0, lt=1, allow_inf_nan=False, description="threshold at this rate on the calibration scores"),
    ] = None,
    heatmap: Heatmap = False,
    mask: Mask = False,
    overlay: Overlay = False,
) -> Response:
    """With `mask` and `overlay`, where each image is anomalous (docs/api.md, "Heatmaps, masks and overlays")."""
    images = await read_images(request, model.manifest.input, settings)
    _check_output(len(images), heatmap + mask + overlay, model.manifest.input, settings.max_body_bytes)
    scored = await ops.score(model, images, importance_samples=importance_samples, seed=seed, score=score,
                             false_positive_rate=false_positive_rate, localise=mask or overlay)  # fmt: skip
    decision = scored.decision
    p, anomaly = decision.p_values, decision.is_anomaly
    heatmaps = _heatmaps(model, scored.scores, heatmap)
    where = scored.localised
    results = [
        {
            **_scores_out(scored.scores, i),
            "score": value,
            "p_value": None if p is None else p[i],
            "is_anomaly": None if anomaly is None else bool(anomaly[i]),
            "heatmap": heatmaps[i],
            "mask": _b64(localise.mask_png(where.masks[i])) if mask and where else None,
            "overlay": _b64(localise.overlay_png(images[i], where.maps[i], where.pixel_threshold))
            if overlay and where
            else None,
        }
        for i, value in enumerate(decision.values)
    ]
    return json_response(
        {**model_ref(model), **_run(scored), "score": decision.score, "threshold": decision.threshold,
         "false_positive_rate": decision.false_positive_rate, "results": results}
    )  # fmt: skip


def _run(scored: Scored) -> dict[str, int]:
    return {"importance_samples": scored.importance_samples, "seed": scored.seed}


@router.get("/limits", summary="What one request may ask of this server", response_model=s.Limits,
            responses=problems(401))  # fmt: skip
async def get_limits(settings: SettingsDep) -> s.Limits:
    """The VAESERVE_ limits: clients split their uploads to fit them."""
    limits = settings.model_dump(include=set(s.Limits.model_fields))
    return s.Limits.model_validate(limits | {"default_importance_samples": DEFAULT_IMPORTANCE_SAMPLES})


def _summary(model: LoadedModel, default: bool) -> dict[str, Any]:
    m = model.manifest
    cal = m.calibration
    return {
        "name": m.name,
        "version": m.version,
        "default": default,
        "description": m.description,
        "created": m.created,
        "input": s.InputSpec.model_validate(m.input.model_dump()),
        "latent_dim": m.latent_dim,
        "likelihood": m.likelihood.kind,
        "metrics": [s.SplitMetrics.model_validate(metrics.model_dump()) for metrics in m.metrics],
        "quantization": None if m.quantization is None else s.Quantization.model_validate(m.quantization.model_dump()),
        "calibration": None
        if cal is None
        else s.CalibrationSummary(
            score=cal.score,
            scores=list(cal.scores),
            threshold=cal.threshold,
            false_positive_rate=cal.false_positive_rate,
            split_size=cal.split_size,
            importance_samples=cal.importance_samples,
        ),
    }


@router.get("/models", summary="List the loaded models with their metrics and calibration", response_model=s.ModelList,
            responses=problems(401, 503))  # fmt: skip
async def list_models(registry: RegistryDep) -> s.ModelList:
    return s.ModelList(models=[s.ModelSummary(**_summary(m, m is registry.default)) for m in registry.all()])


@router.get("/models/{name}", summary="Describe one model", response_model=s.ModelDetail,
            responses=problems(401, 404, 503))  # fmt: skip
async def get_model(name: str, registry: RegistryDep, version: str | None = None) -> s.ModelDetail:
    """Its highest version unless `version` is given: input spec, metrics, calibration, files."""
    model = registry.get(name, version)
    m = model.manifest
    return s.ModelDetail(
        **_summary(model, model is registry.default),
        versions=[v.manifest.version for v in registry.all() if v.manifest.name == name],
        parameters=m.training.parameters if m.training else None,
        dataset=m.dataset.source if m.dataset else None,
        files={file: entry.sha256 for file, entry in m.files.items()},
        latents=None if m.latents is None else _activity(m.latents),
    )


def _activity(stats: LatentStatistics) -> s.LatentActivity:
    """Each dimension's activity and KL from the manifest: computed once, at training."""
    active = active_dimensions(stats)
    dimensions = [
        s.LatentDimension(dimension=d, activity=variance, kl=kl, active=d in active)
        for d, (variance, kl) in enumerate(zip(stats.variance, stats.kl, strict=True))
    ]
    return s.LatentActivity(
        split=stats.split, images=stats.images, threshold=ACTIVE_VARIANCE, most_active=active, dimensions=dimensions
    )

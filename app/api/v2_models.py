"""The three models every bundle serves over the v2 protocol; their I/O contracts are data.

    <name>-encoder  image FP32 [-1, C, H, W]  ->  mean, log_var, z FP32 [-1, D]
    <name>-decoder  z FP32 [-1, D]            ->  image FP32 [-1, C, H, W] in [0, 1]
    <name>-scorer   image FP32 [-1, C, H, W]  ->  every score FP64 [-1], pixel_nll FP32 [-1, C, H, W];
                                                  with a calibration also score, threshold, p_value
                                                  FP64 [-1] and is_anomaly BOOL [-1]; with its pixel
                                                  threshold also mask BOOL [-1, H, W]

Every dimension comes from the bundle's manifest. Request parameters (seed, importance
samples, the decision score and false-positive rate) mean what they mean on /v1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.api.oip import Parameter, refused
from app.errors import check_image_count
from app.serving.operations import Operations
from app.serving.registry import LoadedModel, ModelNotFoundError, ModelRegistry
from model.decision import UncalibratedScoreError, default_importance_samples
from model.preprocess import from_batch
from model.runtime import available_scores

ROLES = ("encoder", "decoder", "scorer")
# Parameters tritonclient, Triton or the protocol may send, which change nothing here: Triton
# reserves these names and every "triton_" one (its docs, "Parameters extension"); KServe's
# client may forward HTTP headers as "headers".
_IGNORED = frozenset({"binary_data_output", "priority", "timeout", "sequence_id", "sequence_start", "sequence_end",
                      "headers"})  # fmt: skip
_IGNORED_PREFIX = "triton_"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: any size (the batch)

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


class _Parameters(BaseModel):
    # strict: importance_samples true is not K = 1, "64" not 64 (JSON numbers and strings as they are)
    model_config = ConfigDict(extra="forbid", strict=True)


class EncoderParameters(_Parameters):
    seed: int = Field(0, ge=0, le=2**63 - 1, description="noise of the draw z")


class DecoderParameters(_Parameters):
    pass


class ScorerParameters(_Parameters):
    importance_samples: int | None = Field(None, description="K; the calibration's K when absent")
    seed: int = Field(0, ge=0, le=2**63 - 1)
    score: str | None = Field(None, description="the decision score; the calibrated one when absent")
    false_positive_rate: float | None = Field(None, gt=0, lt=1, allow_inf_nan=False)


_PARAMETERS: dict[str, type[_Parameters]] = {
    "encoder": EncoderParameters,
    "decoder": DecoderParameters,
    "scorer": ScorerParameters,
}


@dataclass(frozen=True)
class V2Model:
    name: str  # <bundle name>-<role>
    role: str
    model: LoadedModel
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def version(self) -> str:
        return self.model.manifest.version

    @property
    def datatypes(self) -> dict[str, str]:
        return {t.name: t.datatype for t in (*self.inputs, *self.outputs)}

    @property
    def parameter_defaults(self) -> dict[str, str]:
        """Each request parameter's value when a request leaves it out."""
        defaults = {name: field.default for name, field in _PARAMETERS[self.role].model_fields.items()}
        cal = self.model.manifest.calibration
        if self.role == "scorer":
            defaults["importance_samples"] = default_importance_samples(self.model.manifest.calibration)
            if cal is not None:
                defaults.update(score=cal.score, false_positive_rate=cal.false_positive_rate)
        return {name: str(value) for name, value in defaults.items() if value is not None}


def v2_models(model: LoadedModel) -> list[V2Model]:
    """The encoder, decoder and scorer a loaded bundle serves."""
    m = model.manifest
    image = TensorSpec("image", "FP32", (-1, m.input.channels, m.input.height, m.input.width))
    latent = (-1, m.latent_dim)
    scores = [TensorSpec(name, "FP64", (-1,)) for name in available_scores(m)]  # what this bundle can give
    scores.append(TensorSpec("pixel_nll", "FP32", image.shape))  # the heatmap's values
    if m.calibration is not None:
        scores += [TensorSpec(name, "FP64", (-1,)) for name in ("score", "threshold", "p_value")]
        scores.append(TensorSpec("is_anomaly", "BOOL", (-1,)))
        if m.calibration.pixel_threshold is not None:  # /v1/score's mask, as a tensor
            scores.append(TensorSpec("mask", "BOOL", (-1, m.input.height, m.input.width)))
    contracts = {
        "encoder": ((image,), tuple(TensorSpec(n, "FP32", latent) for n in ("mean", "log_var", "z"))),
        "decoder": ((TensorSpec("z", "FP32", latent),), (image,)),
        "scorer": ((image,), tuple(scores)),
    }
    return [V2Model(f"{m.name}-{role}", role, model, *contracts[role]) for role in ROLES]


def resolve(registry: ModelRegistry, name: str, version: str | None) -> V2Model:
    """The v2 model `name` (<bundle>-encoder, -decoder or -scorer), at `version` or the highest."""
    bundle, _, role = name.rpartition("-")
    if role in ROLES and bundle:
        try:
            return v2_models(registry.get(bundle, version))[ROLES.index(role)]
        except ModelNotFoundError:
            pass
    known = ", ".join(sorted({v2.name for m in registry.all() for v2 in v2_models(m)}))
    at = f" version {version!r}" if version else ""
    raise refused(f"unknown model {name!r}{at}; this server has {known}", 404)


def _parameters(v2: V2Model, given: dict[str, Parameter]) -> Any:
    wanted = {k: v for k, v in given.items() if k not in _IGNORED and not k.startswith(_IGNORED_PREFIX)}
    try:
        return _PARAMETERS[v2.role].model_validate(wanted)
    except ValidationError as exc:
        first = exc.errors()[0]
        allowed = ", ".join(_PARAMETERS[v2.role].model_fields) or "none"
        where = ".".join(str(p) for p in first["loc"])
        raise refused(f"parameter {where}: {first['msg']} (parameters of {v2.name}: {allowed})") from None


def _check_inputs(v2: V2Model, arrays: dict[str, NDArray[Any]], max_rows: int) -> NDArray[Any]:
    """The one input array, once its name and batch size are right."""
    (spec,) = v2.inputs
    if set(arrays) != {spec.name}:
        raise refused(f"{v2.name} takes one input, {spec.name!r}; got {', '.join(map(repr, arrays))}")
    values = arrays[spec.name]
    if values.ndim > 0:
        check_image_count(len(values), max_rows, "images" if spec.name == "image" else "latents")  # as /v1
    if values.ndim == 0 or not 1 <= len(values) <= max_rows:
        raise refused(f"input {spec.name!r}: the batch must hold 1 to {max_rows} rows, "
            f"got shape {list(values.shape)}",
        )  # fmt: skip
    if not (values.dtype.kind == "f" or (spec.name == "image" and values.dtype == np.uint8)):
        also = "FP16, FP64" + (", UINT8 0-255" if spec.name == "image" else "")
        raise refused(f"input {spec.name!r}: datatype must be {spec.datatype} (or {also})")
    return values


async def execute(
    v2: V2Model, arrays: dict[str, NDArray[Any]], given: dict[str, Parameter], ops: Operations
) -> dict[str, NDArray[Any]]:
    """Run one inference request through the operations layer; every output of the contract, by name."""
    params = _parameters(v2, given)
    values = _check_inputs(v2, arrays, ops.settings.max_images_per_request)
    model = v2.model
    if v2.role == "decoder":
        return {"image": await ops.decode(model, values)}
    images = from_batch(values, model.manifest.input)
    if v2.role == "encoder":
        enc = await ops.encode(model, images, sample=True, seed=params.seed)
        assert enc.z is not None  # asked for
        return {"mean": enc.mean, "log_var": enc.log_var, "z": enc.z}
    cal = model.manifest.calibration
    try:
        scored = await ops.score(model, images, importance_samples=params.importance_samples, seed=params.seed,
                                 score=params.score, false_positive_rate=params.false_positive_rate,
                                 localise=cal is not None and cal.pixel_threshold is not None)  # fmt: skip
    except UncalibratedScoreError as exc:
        raise refused(f"parameter score: {exc}") from None
    out: dict[str, NDArray[Any]] = {name: scored.scores[name] for name in available_scores(model.manifest)}
    out["pixel_nll"] = scored.scores.pixel_nll
    decision = scored.decision
    if decision.threshold is not None and decision.p_values is not None:
        out.update(
            score=decision.values,
            threshold=np.full(len(images), decision.threshold, dtype=np.float64),
            p_value=decision.p_values,
            is_anomaly=decision.values > decision.threshold,
        )
    if scored.localised is not None:
        out["mask"] = scored.localised.masks
    return out

"""Typed configuration for a training run: data, network, optimisation, calibration.

One pydantic model per concern (`DataConfig`, `ModelConfig`, `TrainConfig`,
`CalibrationConfig`), gathered in `RunConfig` and passed explicitly into the module that
needs it. Unknown keys and values of the wrong type are refused with a `ConfigError` that
names the key. A run's whole config is stored in the checkpoint and in the bundle's
manifest, so a model can always be rebuilt from what it was trained with.

Config comes from a TOML file (tables `[data]`, `[model]`, `[train]`, `[calibration]`)
with command-line overrides on top, each parsed as a TOML value:

    python -m training --config my.toml --set model.latent_dim=32 --set 'train.augment=[{kind="flip"}]'
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from model.scores import (
    CALIBRATED_SCORES,
    COMBINED_SCORES,
    DEFAULT_COMBINATION,
    DEFAULT_FALSE_POSITIVE_RATE,
    DEFAULT_IMPORTANCE_SAMPLES,
    DEFAULT_MIXTURE_COMPONENTS,
    DEFAULT_SCORE,
)

SECTIONS = ("data", "model", "train", "calibration")
# Keys that say where and how fast a run goes, not what it computes: `--resume` may change them.
RUNTIME_KEYS = {("train", "epochs"), ("train", "device"), ("train", "threads"), ("data", "workers")}


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


class _Section(BaseModel):
    # strict: a string is never silently turned into a number; validate_assignment: code
    # that sets a field (the CLI's name default, re-calibration) is checked like a file.
    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)


class DataConfig(_Section):
    """Where the images come from, what the model takes, and how rows are split.

    `channels`, `height` and `width` left unset are taken from the data (the array's shape,
    or the first image of a folder or list); images of another size are converted by
    model/preprocess.py as the service converts uploads (`resize`, `fit`, `background`).
    """

    source: str = "mnist"  # "mnist" (built-in digits), or a path: folder, .npz, IDX file, .csv/.txt list
    labels: list[int | str] | None = None  # keep only these classes: label values, or class folder names
    channels: Literal[1, 3] | None = None  # 1 = greyscale ("L"), 3 = RGB
    height: int | None = Field(None, gt=0)
    width: int | None = Field(None, gt=0)
    resize: Literal["error", "bilinear", "nearest"] = "bilinear"  # for images of another size
    fit: Literal["stretch", "center_crop"] = "stretch"  # of another aspect ratio: stretch, or crop the centre
    background: int | None = Field(None, ge=0, le=255)  # grey level transparent pixels are composited on; None: black
    test_fraction: float = Field(0.1, ge=0, lt=1)
    calibration_fraction: float = Field(0.05, ge=0, lt=1)
    validation_fraction: float = Field(0.05, ge=0, lt=1)
    split_seed: int = 0
    workers: int | None = Field(None, ge=0)  # DataLoader processes per training process; None: 0 for arrays, else 2


class ModelConfig(_Section):
    """The VAE's architecture; the decoder mirrors the encoder."""

    arch: Literal["conv", "mlp"] = "conv"
    latent_dim: int = Field(16, ge=1)
    # Conv blocks, each halving H and W; "auto" picks the depth from the input size (training/nets.py).
    channels: list[Annotated[int, Field(gt=0)]] | Literal["auto"] = "auto"
    hidden: list[Annotated[int, Field(gt=0)]] = [256]  # fully connected widths
    activation: Literal["silu", "relu"] = "silu"
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    gaussian_log_scale: float = -2.0  # initial (or fixed) log std of a Gaussian decoder
    learn_scale: bool = True  # learn the Gaussian decoder's log std (one per channel)


class Shift(_Section):
    """Translate by up to `pixels` in x and y, filling with zeros."""

    kind: Literal["shift"]
    pixels: int = Field(1, ge=1)


class Flip(_Section):
    """Mirror with probability `probability`."""

    kind: Literal["flip"]
    direction: Literal["horizontal", "vertical"] = "horizontal"
    probability: float = Field(0.5, ge=0, le=1)


class Rotate(_Section):
    """Rotate by an angle uniform in [-degrees, degrees], bilinear, filling with zeros."""

    kind: Literal["rotate"]
    degrees: float = Field(10.0, gt=0, le=180)


class ColourJitter(_Section):
    """Scale brightness, contrast and saturation by factors uniform in [1 - x, 1 + x]."""

    kind: Literal["colour_jitter"]
    brightness: float = Field(0.0, ge=0, le=1)
    contrast: float = Field(0.0, ge=0, le=1)
    saturation: float = Field(0.0, ge=0, le=1)  # RGB only


Augmentation = Annotated[Shift | Flip | Rotate | ColourJitter, Field(discriminator="kind")]


class TrainConfig(_Section):
    """Optimisation, regularisation, stopping, and where the run goes."""

    epochs: int = Field(100, ge=1)
    batch_size: int = Field(128, ge=1)  # global: split evenly over torchrun's processes
    lr: float = Field(1e-3, gt=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to 0 at the last epoch
    weight_decay: float = Field(0.0, ge=0)
    beta: float = Field(1.0, ge=0)  # weight of the KL term (beta-VAE)
    warmup_epochs: int = Field(0, ge=0)  # linear KL warm-up from 0 to beta over this many epochs
    early_stopping_patience: int = Field(0, ge=0)  # epochs without validation improvement; 0 = off
    keep: Literal["best", "last"] = "best"  # weights to export: best validation epoch, or the last
    augment: list[Augmentation] = []  # applied in this order to training images only (training/augment.py)
    seed: int = Field(0, ge=0)
    threads: int = Field(0, ge=0)  # torch intra-op threads per process; 0 = torch's default
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda|cuda:[0-9]+|mps)$")  # auto: CUDA when available
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast: bf16 on CUDA or CPU, fp16 on CUDA; graphs float32


class CalibrationConfig(_Section):
    """How the anomaly threshold and the test metrics are computed."""

    score: str = DEFAULT_SCORE  # one of model.scores.CALIBRATED_SCORES; see docs/anomaly.md
    false_positive_rate: float = Field(DEFAULT_FALSE_POSITIVE_RATE, gt=0, lt=1)
    importance_samples: int = Field(DEFAULT_IMPORTANCE_SAMPLES, ge=1)  # K for per-image scores, the service's default
    test_importance_samples: int = Field(1000, ge=1)  # K for the test-set IWAE NLL in the metrics
    seed: int = 0
    combine: list[str] = Field(default_factory=lambda: list(DEFAULT_COMBINATION))  # pooled by fisher and tippett
    mixture_components: int = Field(DEFAULT_MIXTURE_COMPONENTS, ge=1)  # of the latent Gaussian mixture (latent_nll)

    @field_validator("score")
    @classmethod
    def _calibrated(cls, score: str) -> str:
        if score not in CALIBRATED_SCORES:
            raise ValueError(f"calibration.score must be one of {list(CALIBRATED_SCORES)}, got {score!r}")
        return score

    @field_validator("combine")
    @classmethod
    def _poolable(cls, combine: list[str]) -> list[str]:
        poolable = [name for name in CALIBRATED_SCORES if name not in COMBINED_SCORES]
        if not combine or len(set(combine)) != len(combine) or not set(combine) <= set(poolable):
            raise ValueError(f"calibration.combine must name distinct scores of {poolable}, got {combine}")
        return combine


class RunConfig(_Section):
    """Everything that determines a training run."""

    name: str = ""  # empty: named after the output folder (<name>/<version>), else "vae"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    calibration: CalibrationConfig = CalibrationConfig()

    @field_validator("name")
    @classmethod
    def _bundle_name(cls, name: str) -> str:
        if name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ValueError(f"name {name!r} may hold only letters, digits, '_', '.' and '-'")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        d, m = self.data, self.model
        fractions = d.test_fraction + d.calibration_fraction + d.validation_fraction
        if fractions >= 1:
            raise ValueError(f"test + calibration + validation fractions must be < 1, got {fractions:g}")
        if m.arch == "conv" and isinstance(m.channels, list) and d.height and d.width:
            factor = 2 ** len(m.channels)
            if d.height % factor or d.width % factor:
                raise ValueError(
                    f"a conv VAE with {len(m.channels)} blocks needs height and width divisible "
                    f"by {factor}, got {d.height}x{d.width}"
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """Build a config from nested dicts (a parsed TOML file), refusing unknown keys by name."""
        return _validate(cls, raw)

    @classmethod
    def from_stored(cls, raw: dict[str, Any]) -> RunConfig:
        """A config as a checkpoint or manifest stored it, older layouts included."""
        return _validate(cls, _upgrade(raw))

    def without_runtime_keys(self) -> dict[str, Any]:
        """The config minus RUNTIME_KEYS: what must match for `--resume` to continue a run."""
        raw = self.to_dict()
        for section, key in RUNTIME_KEYS:
            raw[section].pop(key)
        return raw


def load_config(path: Path | None, overrides: list[str]) -> RunConfig:
    """Read a TOML config (or the defaults) and apply `section.key=value` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for override in overrides:
        apply_override(raw, override)
    return RunConfig.from_dict(raw)


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set one `section.key=value` (or `name=value`) in a raw config; the value is parsed as TOML."""
    dotted, sep, text = override.partition("=")
    if not sep:
        raise ConfigError(f"override {override!r} must look like section.key=value")
    dotted = dotted.strip()
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # a bare string such as a path
    if dotted == "name":
        raw["name"] = value
        return
    section, dot, key = dotted.partition(".")
    if not dot or not key:
        raise ConfigError(f"override {override!r} must name section.key")
    if section not in SECTIONS:
        raise ConfigError(f"unknown config section [{section}]")
    table = raw.setdefault(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{section}] must be a table")
    table[key] = value


def _validate(cls: type[RunConfig], raw: dict[str, Any]) -> RunConfig:
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc) from None


def config_error(exc: ValidationError, section: str = "") -> ConfigError:
    """A ConfigError naming each wrong key as the file does (`section.key`, for one section's model)."""
    messages: dict[str, str] = {}
    for error in exc.errors():
        if section:
            error = {**error, "loc": (section, *error["loc"])}
        where, message = _describe(error)
        # A union reports one error per member: keep the first for each key.
        if not any(seen.startswith(where) or where.startswith(seen) for seen in messages if where and seen):
            messages[where] = message
    return ConfigError("; ".join(messages.values()))


# Parts of a pydantic error location that name a union member, not a key of the file.
_UNION_MEMBERS = {"int", "str", "float", "bool", "shift", "flip", "rotate", "colour_jitter"}


def _describe(error: Any) -> tuple[str, str]:
    """One pydantic error as (key, `key: what is wrong, got value`), naming the key as the file does."""
    loc = [p for p in error["loc"] if not (isinstance(p, str) and (p in _UNION_MEMBERS or "[" in p))]
    where = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in loc).lstrip(".")
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        if len(loc) == 1 and where != "name":
            return where, f"unknown config section [{where}]"
        return where, f"unknown config key {where}"
    if error["type"] == "value_error":  # our own validators' messages name what they check
        return where, message
    return where, f"{where}: {message}, got {error['input']!r}"


def _upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """Configs stored before the augmentation list had `train.augment_shift = n` instead."""
    raw = copy.deepcopy(raw)
    train = raw.get("train")
    if isinstance(train, dict) and "augment_shift" in train:
        pixels = train.pop("augment_shift")
        train.setdefault("augment", [{"kind": "shift", "pixels": pixels}] if pixels else [])
    return raw

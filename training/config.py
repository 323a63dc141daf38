"""Typed configuration for a training run: data, network, optimisation, export.

One dataclass per concern, passed explicitly into the module that needs it. A run's
whole config is stored in the checkpoint and in the bundle's manifest, so a model can
always be rebuilt from what it was trained with.

Config comes from a TOML file (sections `[data]`, `[model]`, `[train]`, `[calibration]`)
with command-line overrides on top, e.g. `--set model.latent_dim=32`.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from model.scores import (
    CALIBRATED_SCORES,
    COMBINED_SCORES,
    DEFAULT_COMBINATION,
    DEFAULT_FALSE_POSITIVE_RATE,
    DEFAULT_IMPORTANCE_SAMPLES,
    DEFAULT_MIXTURE_COMPONENTS,
    DEFAULT_SCORE,
)


class ConfigError(ValueError):
    """A config file or override that cannot be used."""


@dataclass
class DataConfig:
    """Where the images come from and how they are split."""

    source: str = "mnist"  # "mnist" (built-in digits), or a path: folder, .npz, IDX file
    labels: list[int] | None = None  # keep only these classes (one-class training)
    channels: int = 1
    height: int = 28
    width: int = 28
    resize: Literal["error", "bilinear", "nearest"] = "bilinear"  # for images of another size
    test_fraction: float = 0.1
    calibration_fraction: float = 0.05
    validation_fraction: float = 0.05
    split_seed: int = 0


@dataclass
class ModelConfig:
    """The VAE's architecture; the decoder mirrors the encoder."""

    arch: Literal["conv", "mlp"] = "conv"
    latent_dim: int = 16
    channels: list[int] = field(default_factory=lambda: [32, 64])  # conv blocks, each halves H, W
    hidden: list[int] = field(default_factory=lambda: [256])  # fully connected widths
    activation: Literal["silu", "relu"] = "silu"
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    gaussian_log_scale: float = -2.0  # initial (or fixed) log std of a Gaussian decoder
    learn_scale: bool = True  # learn the Gaussian decoder's log std (one per channel)


@dataclass
class TrainConfig:
    """Optimisation, regularisation and stopping."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: decays to 0 at the last epoch
    weight_decay: float = 0.0
    beta: float = 1.0  # weight of the KL term (beta-VAE)
    warmup_epochs: int = 0  # linear KL warm-up from 0 to beta over this many epochs
    early_stopping_patience: int = 0  # epochs without validation improvement; 0 = off
    keep: Literal["best", "last"] = "best"  # weights to export: best validation epoch, or the last
    augment_shift: int = 0  # random translation of training images by up to this many pixels
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 = torch's default


@dataclass
class CalibrationConfig:
    """How the anomaly threshold and the test metrics are computed."""

    score: str = DEFAULT_SCORE  # one of model.scores.CALIBRATED_SCORES; see docs/anomaly.md
    false_positive_rate: float = DEFAULT_FALSE_POSITIVE_RATE
    importance_samples: int = DEFAULT_IMPORTANCE_SAMPLES  # K for per-image scores, the service's default too
    test_importance_samples: int = 1000  # K for the test-set IWAE NLL in the metrics
    seed: int = 0
    combine: list[str] = field(default_factory=lambda: list(DEFAULT_COMBINATION))  # pooled by fisher and tippett
    mixture_components: int = DEFAULT_MIXTURE_COMPONENTS  # of the latent Gaussian mixture (latent_nll)

    def validate(self) -> None:
        """Raise ConfigError for values the types cannot rule out."""
        if self.score not in CALIBRATED_SCORES:
            raise ConfigError(f"calibration.score must be one of {list(CALIBRATED_SCORES)}, got {self.score!r}")
        if not 0 < self.false_positive_rate < 1:
            raise ConfigError("calibration.false_positive_rate must be in (0, 1)")
        if self.importance_samples < 1:
            raise ConfigError(f"calibration.importance_samples must be >= 1, got {self.importance_samples}")
        poolable = [name for name in CALIBRATED_SCORES if name not in COMBINED_SCORES]
        if not self.combine or len(set(self.combine)) != len(self.combine) or not set(self.combine) <= set(poolable):
            raise ConfigError(f"calibration.combine must name distinct scores of {poolable}, got {self.combine}")
        if self.mixture_components < 1:
            raise ConfigError(f"calibration.mixture_components must be >= 1, got {self.mixture_components}")


@dataclass
class RunConfig:
    """Everything that determines a training run."""

    name: str = ""  # empty: named after the output folder (<name>/<version>), else "vae"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)

    def validate(self) -> RunConfig:
        """Check values that the dataclass types cannot; return self."""
        m, d, t = self.model, self.data, self.train
        if self.name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise ConfigError(f"name {self.name!r} may hold only letters, digits, '_', '.' and '-'")
        if m.latent_dim < 1:
            raise ConfigError(f"model.latent_dim must be >= 1, got {m.latent_dim}")
        if m.arch == "conv":
            factor = 2 ** len(m.channels)
            if d.height % factor or d.width % factor:
                raise ConfigError(
                    f"a conv VAE with {len(m.channels)} blocks needs height and width divisible "
                    f"by {factor}, got {d.height}x{d.width}"
                )
        fractions = d.test_fraction + d.calibration_fraction + d.validation_fraction
        if not 0 <= fractions < 1:
            raise ConfigError(f"test + calibration + validation fractions must be < 1, got {fractions}")
        if t.epochs < 1 or t.batch_size < 1 or t.lr <= 0:
            raise ConfigError("train.epochs, train.batch_size and train.lr must be positive")
        self.calibration.validate()
        if d.channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 or 3, got {d.channels}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """Build a config from nested dicts, rejecting unknown keys by name."""
        config = cls()
        for key, value in raw.items():
            if key == "name":
                config.name = str(value)
                continue
            section = _section(config, key)
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table")
            for sub_key, sub_value in value.items():
                _set_field(section, f"{key}.{sub_key}", sub_key, sub_value)
        return config.validate()


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
    config = RunConfig.from_dict(raw)
    for override in overrides:
        apply_override(config, override)
    return config.validate()


def apply_override(config: RunConfig, override: str) -> None:
    """Apply one `section.key=value` override; the value is parsed as TOML."""
    dotted, sep, text = override.partition("=")
    if not sep:
        raise ConfigError(f"override {override!r} must look like section.key=value")
    dotted = dotted.strip()
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # a bare string such as a path
    if dotted == "name":
        config.name = str(value)
        return
    section_name, dot, key = dotted.partition(".")
    if not dot:
        raise ConfigError(f"override {override!r} must name section.key")
    _set_field(_section(config, section_name), dotted, key, value)


def _section(config: RunConfig, name: str) -> Any:
    if name not in {"data", "model", "train", "calibration"}:
        raise ConfigError(f"unknown config section [{name}]")
    return getattr(config, name)


def _set_field(section: Any, dotted: str, key: str, value: Any) -> None:
    """Set section.key after checking that the key exists and the value has its type."""
    hints = typing.get_type_hints(type(section))
    if key not in hints:
        raise ConfigError(f"unknown config key {dotted}")
    setattr(section, key, _coerce(dotted, hints[key], value))


def _coerce(dotted: str, hint: Any, value: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{dotted} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "")):
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(dotted, non_none[0], value)
    if origin is list:
        items = value if isinstance(value, list) else [value]
        return [_coerce(dotted, args[0], item) for item in items]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{dotted} must be true or false, got {value!r}")
        return value
    if hint in (int, float, str):
        try:
            if hint is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{dotted} must be {hint.__name__}, got {value!r}") from None
    return value

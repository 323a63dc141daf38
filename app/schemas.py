"""Request and response bodies of the v1 API, with the examples the OpenAPI docs show."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from model.bundle import InputSpec, SplitMetrics

ScoreName = Literal[  # the calibrated scores
    "neg_elbo", "iwae_nll", "mse", "complexity", "posterior_mean_nll", "discretised_nll", "dssim", "mahalanobis",
    "latent_nll", "fisher", "tippett",
]  # fmt: skip
_LATENT = [0.12, -1.3, 0.8, 0.05]
_HEATMAP = (
    "with heatmap=true: a base64 PNG of -log p(x_i | z = posterior mean) per pixel, nats, "
    "from dark (0) to bright (the image's largest)"
)


class _Out(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


class ModelRef(_Out):
    model: str = Field(examples=["mnist-vae"])
    version: str = Field(examples=["1"])


class EncodedImage(_Out):
    mean: list[float] = Field(examples=[_LATENT])
    log_var: list[float] = Field(examples=[[-4.1, -3.9, -4.4, -0.1]])
    z: list[float] | None = Field(None, description="one draw from q(z|x), with sample=true", examples=[None])


class EncodeResponse(ModelRef):
    latent_dim: int = Field(examples=[16])
    results: list[EncodedImage]


class DecodeRequest(BaseModel):
    latents: list[list[float]] = Field(min_length=1, examples=[[_LATENT]], description="[N, latent_dim] values")
    format: Literal["png", "array"] = Field("png", description="base64 PNGs, or pixel arrays in [0, 1]")


class ImagesResponse(ModelRef):
    images: list[str] | None = Field(None, description="base64 PNGs", examples=[["iVBORw0KGgo..."]])
    arrays: list[list[list[list[float]]]] | None = Field(None, description="[N, C, H, W] pixels in [0, 1]")


class SamplesResponse(ImagesResponse):
    seed: int = Field(examples=[7])
    temperature: float = Field(examples=[1.0])
    latents: list[list[float]] = Field(examples=[[_LATENT]])


class ImageScores(_Out):
    """Per-image scores, in nats unless named otherwise."""

    neg_elbo: float = Field(examples=[98.2], description="negative ELBO = reconstruction + kl")
    reconstruction: float = Field(examples=[73.5], description="-E_q[log p(x|z)] over the importance samples")
    kl: float = Field(examples=[24.7], description="KL(q(z|x) || p(z)), closed form")
    iwae_nll: float = Field(examples=[93.1], description="-log p(x), importance-weighted with K samples")
    bits_per_dim: float = Field(examples=[0.171], description="iwae_nll in bits per pixel")
    mse: float = Field(examples=[0.012], description="mean squared pixel error of the reconstruction")
    png_bits: float = Field(
        examples=[2448.0], description="L(x), bits: the 8-bit image's length as a PNG (zlib level 9), headers included"
    )
    complexity: float = Field(
        examples=[-2296.3],
        description="iwae_nll / ln 2 - png_bits, bits: Serrà et al. (2020)'s complexity-corrected NLL",
    )
    posterior_mean_nll: float = Field(examples=[61.2], description="-log p(x | z = posterior mean): the heatmap summed")
    discretised_nll: float = Field(
        examples=[3105.4], description="-log P(x in 8 bits | z = posterior mean) under the decoder's density"
    )
    dssim: float = Field(examples=[0.027], description="(1 - SSIM(x, reconstruction)) / 2, 7x7 windows; unitless")
    mahalanobis: float | None = Field(
        examples=[14.1], description="squared Mahalanobis distance of the posterior mean from the training latents"
    )
    latent_nll: float | None = Field(
        examples=[-9.6], description="-log density of the posterior mean under the training latents' Gaussian mixture"
    )
    fisher: float | None = Field(
        examples=[3.8], description="Fisher's -2 sum log p over the combined scores' p-values; unitless"
    )
    tippett: float | None = Field(
        examples=[0.9], description="-log of Tippett's Sidak-corrected minimum p over the combined scores; unitless"
    )


class ScoredImage(ImageScores):
    score: float = Field(examples=[0.012], description="the decision score's value")
    p_value: float | None = Field(examples=[0.42], description="(1 + #calibration >= score) / (n + 1)")
    is_anomaly: bool | None = Field(examples=[False], description="score > threshold")
    heatmap: str | None = Field(None, description=_HEATMAP, examples=[None])


class ScoreResponse(ModelRef):
    importance_samples: int = Field(examples=[64])
    seed: int = Field(examples=[0])
    score: ScoreName = Field(examples=["mse"], description="which score decides")
    threshold: float | None = Field(examples=[0.0183])
    false_positive_rate: float | None = Field(examples=[0.01])
    results: list[ScoredImage]


class ReconstructedImage(_Out):
    image: str | None = Field(None, description="base64 PNG", examples=["iVBORw0KGgo..."])
    array: list[list[list[float]]] | None = Field(None, description="[C, H, W] pixels in [0, 1]")
    scores: ImageScores
    heatmap: str | None = Field(None, description=_HEATMAP, examples=[None])


class ReconstructResponse(ModelRef):
    importance_samples: int = Field(examples=[64])
    seed: int = Field(examples=[0])
    results: list[ReconstructedImage]


class CalibrationSummary(_Out):
    score: str = Field(examples=["mse"])
    threshold: float = Field(examples=[0.0183])
    false_positive_rate: float = Field(examples=[0.01])
    split_size: int = Field(examples=[250])
    importance_samples: int = Field(examples=[64])


class ModelSummary(_Out):
    name: str = Field(examples=["mnist-vae"])
    version: str = Field(examples=["1"])
    default: bool = Field(examples=[True])
    description: str
    created: datetime
    input: InputSpec
    latent_dim: int = Field(examples=[16])
    likelihood: str = Field(examples=["bernoulli"])
    metrics: list[SplitMetrics]
    calibration: CalibrationSummary | None


class ModelDetail(ModelSummary):
    versions: list[str] = Field(examples=[["1"]])
    parameters: int | None = Field(examples=[1790434])
    dataset: str | None = Field(examples=["mnist"])
    files: dict[str, str] = Field(description="sha256 per file", examples=[{"encoder.onnx": "9f2c..."}])


class ModelList(_Out):
    models: list[ModelSummary]


class Health(_Out):
    status: str = Field(examples=["ok"])


class Readiness(Health):
    models: list[str] = Field(examples=[["mnist-vae:1"]])

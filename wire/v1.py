"""Request and response bodies of the v1 API, with the examples the OpenAPI docs show.

The server answers with these and the client parses with them, so the two cannot disagree
on a field. This module imports only pydantic: the client needs nothing of the server.
Score names follow model/scores.SCORES (tests/wire checks that they agree).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

ScoreName = Literal[  # the calibrated scores
    "neg_elbo", "iwae_nll", "mse", "complexity", "posterior_mean_nll", "discretised_nll", "dssim", "mahalanobis",
    "latent_nll", "fisher", "tippett",
]  # fmt: skip
PathMethod = Literal["linear", "slerp"]  # model/latent_paths.PATH_METHODS
# A JSON number, never a string or a boolean cast to one (strict: true is not 1.0, "0" not 0.0).
Number = Annotated[float, Field(strict=True)]
_LATENT = [
    -0.89,
    -0.69,
    1.64,
    0.14,
    -0.28,
    -0.68,
    1.16,
    -0.32,
    0.88,
    0.76,
    -0.62,
    0.37,
    1.17,
    0.56,
    0.01,
    -0.6,
]  # mnist-vae
_HEATMAP = (
    "with heatmap=true: a base64 RGB PNG of -log p(x_i | z = posterior mean) per pixel (nats, summed over channels), "
    "from dark (0) through the middle of the scale (the calibration's pixel threshold) to bright (twice it); "
    "for a bundle without a pixel threshold, from 0 to the image's own largest value"
)
_MASK = (
    "with mask=true: a base64 1-bit PNG of the model's size, white where the heatmap is over the calibration's "
    "pixel threshold; all black when the image is judged normal (is_anomaly false)"
)
_OVERLAY = (
    "with overlay=true: a base64 RGB PNG, the input with its heatmap laid over it; the colour's opacity grows "
    "from 0 (0 nats) to 0.7 (the pixel threshold and above)"
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
    latents: list[list[Number]] = Field(examples=[[_LATENT]], description="[N, latent_dim] numbers, N from 1")
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
        examples=[14.1],
        description="squared Mahalanobis distance of the posterior mean from the training latents; "
        "null for a bundle without latent statistics",
    )
    latent_nll: float | None = Field(
        examples=[-9.6],
        description="-log density of the posterior mean under the training latents' Gaussian mixture; "
        "null for a bundle without one",
    )
    fisher: float | None = Field(
        examples=[3.8],
        description="Fisher's -2 sum log p over the combined scores' p-values; unitless; null for a bundle "
        "without a combination",
    )
    tippett: float | None = Field(
        examples=[0.9],
        description="-log of Tippett's Sidak-corrected minimum p over the combined scores; unitless; null for a "
        "bundle without a combination",
    )


class ScoredImage(ImageScores):
    score: float = Field(examples=[0.012], description="the decision score's value")
    p_value: float | None = Field(examples=[0.42], description="(1 + #calibration >= score) / (n + 1)")
    is_anomaly: bool | None = Field(examples=[False], description="score > threshold")
    heatmap: str | None = Field(None, description=_HEATMAP, examples=[None])
    mask: str | None = Field(None, description=_MASK, examples=[None])
    overlay: str | None = Field(None, description=_OVERLAY, examples=[None])


class ScoreResponse(ModelRef):
    importance_samples: int = Field(examples=[64])
    seed: int = Field(examples=[0])
    score: ScoreName = Field(examples=["mse"], description="which score decides")
    threshold: float | None = Field(examples=[0.0187])
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


class InputSpec(_Out):
    """What the encoder takes; images of another size or colour mode are converted to it."""

    channels: int = Field(examples=[1])
    height: int = Field(examples=[28])
    width: int = Field(examples=[28])
    colour_mode: str = Field(examples=["L"])
    value_range: tuple[float, float] = Field(examples=[(0.0, 1.0)])
    resize: str = Field(examples=["bilinear"], description="how images of another size are resized")
    fit: str = Field(
        examples=["stretch"], description="another aspect ratio: stretch, or center_crop (keep the centre)"
    )
    background: list[float] = Field(
        examples=[[0.0]], description="what transparent pixels show: one grey value, or one per channel"
    )


class SplitMetrics(_Out):
    """Mean scores over one split of the training data, in nats per image unless named otherwise."""

    split: str = Field(examples=["test"])
    images: int = Field(examples=[500])
    neg_elbo: float = Field(examples=[97.8])
    reconstruction: float = Field(examples=[72.1])
    kl: float = Field(examples=[25.7])
    iwae_nll: float = Field(examples=[93.7])
    importance_samples: int = Field(examples=[1000])
    bits_per_dim: float = Field(examples=[0.1724])


class CalibrationSummary(_Out):
    score: str = Field(examples=["mse"])
    scores: list[str] = Field(
        examples=[["neg_elbo", "iwae_nll", "mse", "complexity"]], description="every score the bundle calibrated"
    )
    threshold: float = Field(examples=[0.0187])
    false_positive_rate: float = Field(examples=[0.01])
    split_size: int = Field(examples=[250])
    importance_samples: int = Field(examples=[64])


class ParentRef(_Out):
    """The float bundle a quantised bundle was made from."""

    name: str = Field(examples=["mnist-vae"])
    version: str = Field(examples=["1"])
    sha256: dict[str, str] = Field(description="of its graphs, per file name")


class QualityCheck(_Out):
    """One metric of a quantised bundle against its float parent, as the quality gate saw it."""

    metric: str = Field(examples=["test neg_elbo"])
    parent: float = Field(examples=[97.998])
    quantized: float = Field(examples=[98.165])
    tolerance: float = Field(examples=[0.5], description="the largest |quantized - parent| the gate allowed")


class Quantization(_Out):
    """How a quantised bundle was made from its float parent, and the quality it kept."""

    method: str = Field(examples=["onnxruntime static QDQ int8"])
    parent: ParentRef
    graphs: list[str] = Field(examples=[["encoder"]], description="the graphs quantised; the others are the parent's")
    per_channel: bool
    activation_type: str = Field(examples=["uint8"])
    weight_type: str = Field(examples=["int8"])
    calibration_images: int = Field(examples=[250])
    onnxruntime: str = Field(examples=["1.23.2"], description="the version that quantised")
    quality: list[QualityCheck]


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
    quantization: Quantization | None = Field(
        None, description="for an int8 variant: its float parent, the method, and the quality it kept against it"
    )


class LatentDimension(_Out):
    """One latent dimension over the training split."""

    dimension: int = Field(examples=[6])
    activity: float = Field(
        examples=[1.16], description="variance of the posterior means E_q[z_d|x] over the data (Burda et al. 2016)"
    )
    kl: float = Field(examples=[2.53], description="mean KL(q(z_d|x) || N(0, 1)), nats")
    active: bool = Field(examples=[True], description="activity above the threshold")


class LatentActivity(_Out):
    """Which latent dimensions the model uses, from its manifest's statistics of the training split."""

    split: str = Field(examples=["train"])
    images: int = Field(examples=[4000])
    threshold: float = Field(examples=[0.01], description="an activity above this makes a dimension active")
    most_active: list[int] = Field(examples=[[6, 0, 5]], description="the active dimensions, most active first")
    dimensions: list[LatentDimension] = Field(description="every dimension, in index order")


class ModelDetail(ModelSummary):
    versions: list[str] = Field(examples=[["1"]])
    parameters: int | None = Field(examples=[1790434])
    dataset: str | None = Field(examples=["mnist"])
    files: dict[str, str] = Field(description="sha256 per file", examples=[{"encoder.onnx": "9f2c..."}])
    latents: LatentActivity | None = Field(description="per-dimension activity; null for a bundle without statistics")


class LatentsRequest(BaseModel):
    """Latent codes where an endpoint also takes images (interpolate, traverse)."""

    latents: list[list[Number]] = Field(description="[N, latent_dim] numbers, N from 1")


class InterpolateResponse(ModelRef):
    method: PathMethod = Field(examples=["slerp"])
    t: list[float] = Field(examples=[[0.0, 0.5, 1.0]], description="each image's position on the path, 0 to 1")
    latents: list[list[float]] = Field(examples=[[_LATENT]], description="[steps, latent_dim] codes on the path")
    images: list[str] = Field(examples=[["iVBORw0KGgo..."]], description="base64 PNGs decoded from them")


class TraversedDimension(_Out):
    dimension: int = Field(examples=[6])
    activity: float | None = Field(examples=[1.16], description="as in LatentDimension; null without statistics")
    latents: list[list[float]] = Field(examples=[[_LATENT]], description="[steps, latent_dim]: the base, d swept")
    images: list[str] = Field(examples=[["iVBORw0KGgo..."]], description="base64 PNGs decoded from them")


class TraverseResponse(ModelRef):
    base: list[float] = Field(examples=[_LATENT], description="the code swept around: a posterior mean or the latent")
    values: list[float] = Field(
        examples=[[-3.0, 0.0, 3.0]], description="the values each dimension is set to, prior standard deviations"
    )
    dimensions: list[TraversedDimension]


class ModelList(_Out):
    models: list[ModelSummary]


class Limits(_Out):
    """What one request may ask of this server; each is the VAESERVE_ setting of the same name."""

    max_body_bytes: int = Field(examples=[16777216], description="bytes per request body")
    max_images_per_request: int = Field(examples=[256])
    max_pixels_per_image: int = Field(examples=[16777216], description="decoded pixels per image")
    max_samples: int = Field(examples=[256], description="n for GET /v1/samples")
    max_importance_samples: int = Field(examples=[5000], description="K for scores")
    max_total_importance_samples: int = Field(
        examples=[16384], description="images x K per score or reconstruct request: the work one request may buy"
    )
    default_importance_samples: int = Field(
        examples=[64], description="K when neither the request nor the model's calibration names one"
    )
    max_interpolation_steps: int = Field(examples=[64], description="steps for POST /v1/interpolate")


class Histogram(_Out):
    """A histogram as Prometheus counts it: for each edge, how many values were <= it."""

    edges: list[float] = Field(examples=[[0.1, 0.5, 1.0]], description="upper bounds, increasing (+Inf left out)")
    cumulative: list[int] = Field(examples=[[3, 40, 52]], description="values <= each edge")
    count: int = Field(examples=[55], description="all values (the +Inf bucket)")
    sum: float = Field(examples=[31.7])


class ScoreHistogram(Histogram):
    threshold: float = Field(examples=[0.0187], description="this score's threshold at the calibrated rate")


class Window(_Out):
    """What a sliding window holds, and when its oldest and newest entries arrived."""

    size: int = Field(examples=[500])
    capacity: int = Field(examples=[500], description="the most it holds (VAESERVE_ANOMALY_RATE_WINDOW, _DRIFT_WINDOW)")
    first: datetime | None = Field(examples=["2026-11-02T10:14:03.512Z"], description="null while empty")
    last: datetime | None = Field(examples=["2026-11-02T10:19:41.007Z"])


class AnomalyRate(_Out):
    """The calibrated score against its calibrated threshold over the last N scored images,
    whatever score or false_positive_rate the requests asked for."""

    rate: float | None = Field(examples=[0.012], description="anomalies / window.size; null before any image")
    anomalies: int = Field(examples=[6])
    score: str = Field(examples=["mse"])
    threshold: float = Field(examples=[0.0187])
    false_positive_rate: float = Field(examples=[0.01], description="what the rate is on normal data")
    window: Window


class DecisionCount(_Out):
    score: str = Field(examples=["mse"], description="the score that decided")
    decision: Literal["anomaly", "normal"] = Field(examples=["normal"])
    images: int = Field(examples=[1203])


class MMDTest(_Out):
    statistic: float = Field(examples=[0.0021], description="MMD²_u, Gaussian kernel")
    p_value: float = Field(examples=[0.61], description="permutation p-value; at least 1 / (permutations + 1)")
    bandwidth: float = Field(examples=[3.9], description="σ of the kernel: the median pairwise distance")
    permutations: int = Field(examples=[500])


class KSTests(_Out):
    statistic: float = Field(examples=[0.051], description="the largest per-dimension KS statistic")
    p_value: float = Field(examples=[0.83], description="the smallest Holm-adjusted p-value")
    level: float = Field(examples=[0.05])
    flagged: list[int] = Field(examples=[[]], description="dimensions with adjusted p-value <= level")
    statistics: list[float] = Field(description="per dimension")
    adjusted_p_values: list[float] = Field(description="per dimension, Holm-adjusted")


class Drift(_Out):
    """The last drift report: recent posterior means against the bundle's training latents."""

    computed_at: datetime = Field(examples=["2026-11-02T10:19:45.250Z"])
    window: Window = Field(description="the latents it tested")
    reference: int = Field(examples=[500], description="training latents it compared them with")
    mmd: MMDTest
    ks: KSTests
    mean_shift: list[float] = Field(
        examples=[[0.04, -0.08]], description="per dimension: (window mean - training mean) / training std"
    )
    std_shift: list[float] = Field(
        examples=[[0.01, 0.03]], description="per dimension: (window std - training std) / training std"
    )


class MonitoringResponse(ModelRef):
    """What the model has seen since `since`: the numbers /metrics gives for it, as JSON."""

    since: datetime = Field(description="when monitoring of this model version started: counts are since then")
    images_encoded: int = Field(examples=[120], description="images through /v1/encode and the v2 encoder")
    images_scored: int = Field(examples=[1215], description="images through scoring and reconstruction")
    anomaly_rate: AnomalyRate | None = Field(description="null for a bundle without calibration")
    decisions: list[DecisionCount]
    scores: dict[str, ScoreHistogram] = Field(description="every calibrated score; buckets from the calibration")
    p_values: Histogram | None = Field(description="conformal p-values under the calibrated score")
    input_mean_intensity: Histogram = Field(description="mean pixel value of each input image, in [0, 1]")
    latents: Window | None = Field(description="the drift window now; null when drift is off or the bundle has no "
                                   "training latents")  # fmt: skip
    drift: Drift | None = Field(description="null until the first report (VAESERVE_DRIFT_INTERVAL_S)")


class Health(_Out):
    status: str = Field(examples=["ok"])


class Readiness(Health):
    models: list[str] = Field(examples=[["mnist-vae:1"]])

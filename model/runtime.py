"""The ONNX Runtime side of a bundle: encode, decode, sample, reconstruct and score.

`VAERuntime` loads a verified bundle's two graphs once and serves them; all noise is
drawn on the host from seeded numpy generators, so every result is reproducible from
(input, parameters, seed). The trainer calibrates with this class and the service
answers with it, so both compute the same numbers.

    runtime = VAERuntime(load_bundle("model/zoo/mnist-vae/1"))
    scores = runtime.score(images, importance_samples=64, seed=0)   # images (N, C, H, W)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from model import scores as S
from model.bundle import Bundle, Combination, LatentStatistics, LikelihoodSpec, Manifest
from model.decision import p_values
from model.errors import BundleError, InputError, NonFiniteOutputError
from model.preprocess import png_bits
from model.providers import check_session, select_providers
from model.scores import COMBINED_SCORES, SCORE_NAMES

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]

# Latents are refused beyond this many standard deviations of the prior N(0, I). The decoder
# was trained on posterior draws within a few units of 0; it is piecewise linear, so far out
# its logits grow linearly (about 19 per unit for the shipped model) and every pixel is
# already saturated to 0 or 1 by |z| = 30; past about 1e36 float32 overflows inside it and
# answers NaN. No draw of /v1/samples (temperature <= 10) comes near 100.
MAX_ABS_LATENT = 100.0
# Importance samples per piece of scoring work (`score_part`). Pieces start at multiples of
# it whatever the request, so a score does not depend on how the service splits the work;
# at the calibration's K = 64 an image is one piece, as the whole score used to be.
SAMPLE_CHUNK = 64
# Decoder passes (images x importance samples) in one piece of a score the service runs
# (`score_pieces`): a deadline or a disconnect stops the work after at most one piece.
PIECE_DECODES = 512

_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class RuntimeOptions:
    """ONNX Runtime session settings."""

    intra_op_threads: int = 0  # 0 lets ONNX Runtime choose
    inter_op_threads: int = 0
    graph_optimization: str = "all"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    decode_chunk: int = 64  # latents per decoder call when scoring: bounds ONNX Runtime's memory
    memory_arena: bool = True  # ORT's CPU arena: reuses buffers; keeps its peak, which decode_chunk bounds


@dataclass(frozen=True)
class ScoreBatch:
    """Every score of `model/scores.SCORES` for a batch of N images, by name, and the arrays behind them."""

    scores: dict[str, F64]  # name -> (N,), in SCORES order; nats unless the table says otherwise
    reconstructions: F32  # (N, C, H, W): decoded from the posterior mean, the images mse compares
    pixel_nll: F32  # (N, C, H, W): -log p(x_i | z = posterior mean) per pixel, nats; the heatmap
    mean: F32  # (N, D): the posterior means E_q[z|x] the scores were computed from (what drift monitoring keeps)
    importance_samples: int

    def __getitem__(self, name: str) -> F64:
        return self.scores[name]

    def __len__(self) -> int:
        return len(self.reconstructions)

    def arrays(self) -> dict[str, NDArray[np.generic]]:
        """Every per-image array by name: what crosses the micro-batcher."""
        return {**self.scores, "reconstructions": self.reconstructions, "pixel_nll": self.pixel_nll, "mean": self.mean}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[np.generic]], importance_samples: int) -> ScoreBatch:
        return cls(
            scores={name: np.asarray(arrays[name], np.float64) for name in SCORE_NAMES},
            reconstructions=np.asarray(arrays["reconstructions"], np.float32),
            pixel_nll=np.asarray(arrays["pixel_nll"], np.float32),
            mean=np.asarray(arrays["mean"], np.float32),
            importance_samples=importance_samples,
        )


def noise(seed: int, shape: tuple[int, ...]) -> F32:
    """Standard normal noise from a seeded generator (PCG64): same seed, same values."""
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def sample_posterior(mean: F32, log_var: F32, seed: int) -> F32:
    """One draw z = mean + exp(log_var/2) * eps per row, eps from `seed`."""
    return mean + np.exp(0.5 * log_var) * noise(seed, mean.shape)


class VAERuntime:
    """Two ONNX Runtime sessions (encoder, decoder) and the maths around them."""

    def __init__(self, bundle: Bundle, options: RuntimeOptions | None = None) -> None:
        self.bundle = bundle
        self.manifest = bundle.manifest
        self.options = options or RuntimeOptions()
        self.input = self.manifest.input
        self.latent_dim = self.manifest.latent_dim
        self._decoder_output = self.manifest.likelihood.decoder_output
        self.providers = select_providers(self.options.providers)  # those this installation has, CPU last
        self._encoder = self._session(str(bundle.encoder_path))
        self._decoder = self._session(str(bundle.decoder_path))
        self._check_graphs()

    def _session(self, path: str) -> ort.InferenceSession:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.options.intra_op_threads
        opts.inter_op_num_threads = self.options.inter_op_threads
        opts.graph_optimization_level = _OPTIMIZATION[self.options.graph_optimization]
        opts.enable_cpu_mem_arena = self.options.memory_arena
        try:
            session = ort.InferenceSession(path, opts, providers=self.providers)
        except Exception as exc:  # ORT raises its own untyped errors for a bad graph
            raise BundleError(path, f"ONNX Runtime cannot load it ({exc})") from None
        check_session(session, path, self.providers)
        return session

    def _check_graphs(self) -> None:
        """The graphs must have the names and shapes the manifest promises."""
        spec = self.input
        expected = {
            "encoder": (self._encoder, ["image"], ["mean", "log_var"], [spec.channels, spec.height, spec.width]),
            "decoder": (self._decoder, ["z"], [self._decoder_output], [self.latent_dim]),
        }
        for name, (session, inputs, outputs, shape) in expected.items():
            got_in = [i.name for i in session.get_inputs()]
            got_out = [o.name for o in session.get_outputs()]
            if got_in != inputs or got_out != outputs:
                raise BundleError(
                    str(self.bundle.path / f"{name}.onnx"),
                    f"graph has inputs {got_in} and outputs {got_out}, expected {inputs} and {outputs}",
                )
            got_shape = list(session.get_inputs()[0].shape[1:])
            if got_shape != shape:
                raise BundleError(
                    str(self.bundle.path / f"{name}.onnx"),
                    f"graph input shape {got_shape} does not match the manifest's {shape}",
                )

    # -- the graphs ---------------------------------------------------------------------

    def encode(self, images: F32) -> tuple[F32, F32]:
        """(N, C, H, W) in [0, 1] -> mean, log_var (N, D). NonFiniteOutputError if either is not finite."""
        mean, log_var = self._encoder.run(None, {"image": np.ascontiguousarray(images, np.float32)})
        check_finite({"mean": mean, "log_var": log_var})
        return mean, log_var

    def decode_params(self, z: F32) -> F32:
        """(N, D) -> the likelihood's parameters (N, C, H, W): logits or a Gaussian mean."""
        (params,) = self._decoder.run(None, {"z": np.ascontiguousarray(z, np.float32)})
        return params

    def params_to_images(self, params: F32) -> F32:
        """The mean of p(x|z) as images in [0, 1]."""
        return params_to_images(self.manifest.likelihood, params)

    def decode(self, z: F32) -> F32:
        """(N, D) latents -> (N, C, H, W) images in [0, 1]. NonFiniteOutputError if any is not finite."""
        images = self.params_to_images(self.decode_params(self.check_latents(z)))
        check_finite({"image": images})
        return images

    def check_latents(self, z: NDArray[np.floating]) -> F32:
        """Latents (N, D) of any float type as float32, once finite and within +-MAX_ABS_LATENT."""
        z = np.asarray(z)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise InputError(f"latents must have shape [N, {self.latent_dim}], got {list(z.shape)}")
        if not np.isfinite(z).all():
            raise InputError("latents hold NaN or infinite values")
        outside = np.abs(z) > MAX_ABS_LATENT
        if outside.any():
            row, col = np.argwhere(outside)[0]
            raise InputError(
                f"latent values must lie in [-{MAX_ABS_LATENT:g}, {MAX_ABS_LATENT:g}] ({MAX_ABS_LATENT:g} standard "
                f"deviations of the prior); latent {row} holds {float(z[row, col]):g} at dimension {col}"
            )
        return z.astype(np.float32)

    # -- what users ask for ---------------------------------------------------------------

    def sample_latents(self, n: int, seed: int, temperature: float = 1.0) -> F32:
        """n draws from the prior N(0, temperature^2 I)."""
        return noise(seed, (n, self.latent_dim)) * np.float32(temperature)

    def sample(self, n: int, seed: int, temperature: float = 1.0) -> tuple[F32, F32]:
        """n images decoded from prior draws; returns (latents, images)."""
        z = self.sample_latents(n, seed, temperature)
        return z, self.decode(z)

    def reconstruct(self, images: F32) -> F32:
        """Decode the posterior mean of each image."""
        mean, _ = self.encode(images)
        return self.decode(mean)

    def log_likelihood(self, images: F32, params: F32) -> F64:
        """log p(x|z) summed over pixels, for images and parameters of the same shape (..., C, H, W)."""
        return S.sum_pixels(self.pixel_log_likelihood(images, params))

    def pixel_log_likelihood(self, images: F32, params: F32) -> F64:
        """log p(x_i|z) per pixel, (..., C, H, W)."""
        return pixel_log_likelihood(self.manifest.likelihood, images, params)

    def score(self, images: F32, importance_samples: int = 64, seed: int = 0) -> ScoreBatch:
        """All per-image scores with K = importance_samples draws from q(z|x): `score_images` on these graphs."""
        return score_images(self, images, importance_samples, seed, self.options.decode_chunk)

    def score_part(
        self, images: F32, seed: int, start: int, stop: int, encoded: tuple[F32, F32] | None = None
    ) -> dict[str, NDArray[np.generic]]:
        """One piece of the scores of `images`: `score_part` on these graphs."""
        return score_part(self, images, seed, start, stop, encoded, self.options.decode_chunk)


class Graphs(Protocol):
    """What scoring needs of a model: its manifest and its two graphs. `VAERuntime` runs the
    ONNX graphs; the trainer passes its torch networks, to check that both give one answer."""

    @property
    def manifest(self) -> Manifest: ...

    def encode(self, images: F32) -> tuple[F32, F32]: ...

    def decode_params(self, z: F32) -> F32: ...


def pixel_log_likelihood(likelihood: LikelihoodSpec, images: F32, params: F32) -> F64:
    """log p(x_i|z) per pixel, (..., C, H, W), for the manifest's likelihood."""
    x = images.astype(np.float64)
    if likelihood.kind == "bernoulli":
        return S.bernoulli_pixel_log_prob(x, params)
    return S.gaussian_pixel_log_prob(x, params, _log_scale(likelihood))


def bin_log_likelihood(likelihood: LikelihoodSpec, images: F32, params: F32) -> F64:
    """log P(x_i's 8-bit bin | z) per pixel: the continuous Bernoulli read of Bernoulli logits, or the Gaussian."""
    if likelihood.kind == "bernoulli":
        return S.continuous_bernoulli_bin_log_prob(images, params)
    return S.gaussian_bin_log_prob(images, params, _log_scale(likelihood))


def _log_scale(likelihood: LikelihoodSpec) -> F64:
    return np.asarray(likelihood.log_scale or [0.0], dtype=np.float64)


def params_to_images(likelihood: LikelihoodSpec, params: F32) -> F32:
    """The mean of p(x|z) as images in [0, 1]."""
    if likelihood.kind == "bernoulli":
        return (0.5 * (1.0 + np.tanh(0.5 * params))).astype(np.float32)  # sigmoid, overflow-free
    return np.clip(params, 0.0, 1.0)


# Added to the covariance's diagonal before it is inverted: the variance below which a latent
# dimension is inactive (model/latents.ACTIVE_VARIANCE, Burda et al. 2016). A dimension the
# encoder barely uses has a posterior mean that hardly varies over the data; without the floor
# its tiny variance would turn encoder noise (an int8 encoder's, say) into huge distances.
PRECISION_RIDGE = 0.01


def latent_precision(latents: LatentStatistics) -> F64:
    """The inverse of the training posterior means' covariance plus PRECISION_RIDGE * I (D, D)."""
    covariance = np.asarray(latents.covariance, np.float64)
    return np.asarray(np.linalg.inv(covariance + PRECISION_RIDGE * np.eye(len(covariance))), np.float64)


def combined_scores(combination: Combination | None, scores: Mapping[str, F64]) -> dict[str, F64]:
    """Every combined score of `SCORES` from the component scores (N,) by name: each
    component's conformal p-value against the combination's reference scores, pooled by
    Fisher's and Tippett's methods. NaN where there is no combination or a component is NaN."""
    n = len(next(iter(scores.values())))
    if combination is None:
        return {name: np.full(n, np.nan) for name in COMBINED_SCORES}
    components = np.stack([scores[name] for name in combination.scores], axis=-1)  # (N, m)
    p = np.stack([p_values(combination.reference[name], scores[name]) for name in combination.scores], axis=-1)
    statistics = {"fisher": S.fisher_statistic(p), "tippett": S.tippett_statistic(p)}
    missing = np.isnan(components).any(axis=-1)
    return {name: np.where(missing, np.nan, statistics[name]) for name in COMBINED_SCORES}


CHUNK_VALUES = 2**19  # pixel values scored per call, so memory is bounded (64 MNIST digits, 2 RGB 256x256 images)


def chunk_size(dims: int) -> int:
    """Images per chunk (1 to 64) for images of `dims` values each: the rows of one ONNX Runtime
    decode call, or the images read and scored at a time, whatever the image size."""
    return max(1, min(64, CHUNK_VALUES // dims))


def score_images(graphs: Graphs, images: F32, importance_samples: int, seed: int, decode_chunk: int = 64) -> ScoreBatch:
    """All per-image scores of `SCORES` with K = importance_samples draws from q(z|x).

    Every image uses the same K standard-normal draws for a given seed, so an image's
    scores do not depend on what else is in the batch. Computed as `score_part`s of
    SAMPLE_CHUNK samples joined by `join_parts`, exactly as the service computes them.
    """
    k = importance_samples
    if k < 1:
        raise InputError(f"importance_samples must be >= 1, got {k}")
    images = np.asarray(images, dtype=np.float32)
    encoded = graphs.encode(images)
    parts = [score_part(graphs, images, seed, start, stop, encoded, decode_chunk) for start, stop in sample_chunks(k)]
    return join_parts(graphs.manifest, parts, k)


def score_part(
    graphs: Graphs,
    images: F32,
    seed: int,
    start: int,
    stop: int,
    encoded: tuple[F32, F32] | None = None,
    decode_chunk: int = 64,
) -> dict[str, NDArray[np.generic]]:
    """One piece of `score_images`: importance samples start..stop of each image (N, C, H, W).

    Returns per image the sum of log p(x|z_k) ("sum_log_px") and the log-sum-exp of the
    importance weights log p(x|z_k) + log p(z_k) - log q(z_k|x) ("lse_log_weights") over
    those samples; the part that starts at 0 also holds everything computed from the
    posterior mean (kl, reconstructions, mse, pixel_nll, png_bits, the scores of the
    reconstruction, and those of the latent density the bundle can give). z_k uses row k
    of noise(seed, (K, D)), whatever K is. NonFiniteOutputError if any output is not finite.
    """
    manifest = graphs.manifest
    likelihood, latent_dim = manifest.likelihood, manifest.latent_dim
    mean, log_var = encoded if encoded is not None else graphs.encode(images)  # (N, D)
    eps = noise(seed, (stop, latent_dim))[start:]  # (k, D): the prefix of every longer draw
    k = len(eps)
    z = mean[:, None] + np.exp(0.5 * log_var)[:, None] * eps[None]  # (N, k, D)
    flat = z.reshape(-1, latent_dim)  # (N*k, D): row r belongs to image r // k
    flat_log_px = np.empty(len(flat))
    # Decode in chunks of rows, whatever N and K: ONNX Runtime's memory grows with the
    # largest call it ever served, so no request may make one call huge.
    for first in range(0, len(flat), decode_chunk):
        rows = np.arange(first, min(first + decode_chunk, len(flat)))
        per_pixel = pixel_log_likelihood(likelihood, images[rows // k], graphs.decode_params(flat[rows]))
        flat_log_px[rows] = S.sum_pixels(per_pixel)
    log_px = flat_log_px.reshape(len(images), k)  # (N, k)
    log_weights = log_px + S.standard_normal_log_prob(z) - S.diag_normal_log_prob(eps[None], log_var[:, None])
    part: dict[str, NDArray[np.generic]] = {"sum_log_px": log_px.sum(axis=1),
                                            "lse_log_weights": S.log_sum_exp(log_weights)}  # fmt: skip
    if start == 0:
        recon_params = graphs.decode_params(mean)  # (N, C, H, W)
        recon_images = params_to_images(likelihood, recon_params)
        # The heatmap: which pixels the model cannot explain from the image's own code. The
        # posterior mean rather than the K samples: one deterministic map, the one `mse` uses.
        pixel_nll = -pixel_log_likelihood(likelihood, images, recon_params)  # (N, C, H, W)
        part |= {
            "mean": mean,
            "kl": S.kl_to_standard_normal(mean, log_var),
            "reconstructions": recon_images,
            "mse": ((recon_images.astype(np.float64) - images) ** 2).reshape(len(images), -1).mean(axis=1),
            "pixel_nll": pixel_nll.astype(np.float32),
            "png_bits": png_bits(images),
            "posterior_mean_nll": S.sum_pixels(pixel_nll),
            "discretised_nll": S.sum_pixels(-bin_log_likelihood(likelihood, images, recon_params)),
            "dssim": S.dssim(images, recon_images),
        }
        latents = manifest.latents
        if latents is not None:
            part["mahalanobis"] = S.mahalanobis_squared(mean, latents.mean, latent_precision(latents))
            if latents.mixture is not None:
                mixture = latents.mixture
                part["latent_nll"] = S.mixture_nll(mean, mixture.weights, mixture.means, mixture.precisions_cholesky)
    check_finite(part)
    return part


def sample_chunks(importance_samples: int) -> list[tuple[int, int]]:
    """The (start, stop) sample ranges of the pieces of one score: SAMPLE_CHUNK samples each."""
    k = importance_samples
    return [(start, min(start + SAMPLE_CHUNK, k)) for start in range(0, k, SAMPLE_CHUNK)]


def score_pieces(importance_samples: int) -> list[tuple[int, int, int]]:
    """How the service cuts one score into pieces: (start, stop, images) per sample range of
    `sample_chunks`, with at most `images` images per piece, so that no piece asks for more
    than PIECE_DECODES decoder passes (images x samples), whatever the request's size."""
    return [(start, stop, max(1, PIECE_DECODES // (stop - start))) for start, stop in sample_chunks(importance_samples)]


def join_parts(
    manifest: Manifest, parts: Sequence[Mapping[str, NDArray[np.generic]]], importance_samples: int
) -> ScoreBatch:
    """The scores of `score_part`s covering samples 0..K, in order (the first holds the posterior-mean part).

    reconstruction = -(sum of log p(x|z_k)) / K; iwae_nll = -(log-sum-exp of the parts'
    log-sum-exps - log K): with one part, exactly what a single computation gives. A score
    the bundle cannot give (it has no latent statistics, mixture or combination for it) is
    NaN; `available_scores` says which a bundle gives.
    """
    k, first = importance_samples, parts[0]
    n = len(first["sum_log_px"])
    sum_log_px = np.asarray(first["sum_log_px"], np.float64)
    for part in parts[1:]:
        sum_log_px = sum_log_px + np.asarray(part["sum_log_px"], np.float64)
    reconstruction = -(sum_log_px / k)
    iwae_nll = -(S.log_sum_exp(np.stack([part["lse_log_weights"] for part in parts], axis=-1)) - math.log(k))
    kl, lengths = np.asarray(first["kl"], np.float64), np.asarray(first["png_bits"], np.float64)
    scores: dict[str, F64] = {
        "neg_elbo": reconstruction + kl,
        "reconstruction": reconstruction,
        "kl": kl,
        "iwae_nll": iwae_nll,
        "bits_per_dim": S.bits_per_dim(iwae_nll, manifest.input.dims),
        "png_bits": lengths,
        "complexity": S.complexity_corrected(iwae_nll, lengths),
    }
    for name in ("mse", "posterior_mean_nll", "discretised_nll", "dssim", "mahalanobis", "latent_nll"):
        scores[name] = np.asarray(first[name], np.float64) if name in first else np.full(n, np.nan)
    calibration = manifest.calibration
    scores |= combined_scores(calibration.combination if calibration is not None else None, scores)
    return ScoreBatch(
        {name: scores[name] for name in SCORE_NAMES},
        np.asarray(first["reconstructions"], np.float32),
        np.asarray(first["pixel_nll"], np.float32),
        np.asarray(first["mean"], np.float32),
        k,
    )


def available_scores(manifest: Manifest) -> tuple[str, ...]:
    """The scores of `SCORES` this bundle gives: the others need latent statistics, a mixture
    or a combination that it does not have, and are NaN."""
    latents, calibration = manifest.latents, manifest.calibration
    missing: set[str] = set()
    if latents is None:
        missing |= {"mahalanobis", "latent_nll"}
    elif latents.mixture is None:
        missing.add("latent_nll")
    combination = calibration.combination if calibration is not None else None
    if combination is None or set(combination.scores) & missing:
        missing |= set(COMBINED_SCORES)
    return tuple(name for name in SCORE_NAMES if name not in missing)


def check_finite(outputs: Mapping[str, NDArray[np.generic]]) -> None:
    """NonFiniteOutputError naming the first output holding NaN or infinity: never send what the model did not mean."""
    for name, values in outputs.items():
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise NonFiniteOutputError(
                f"the model's {name} is not finite (NaN or infinite) for this input: "
                "it lies outside what the model can represent"
            )


def batched_scores(
    runtime: VAERuntime, images: F32, importance_samples: int, seed: int, batch: int = 256
) -> ScoreBatch:
    """`runtime.score` over a large array in batches; the result does not depend on `batch`."""
    parts = [
        runtime.score(images[i : i + batch], importance_samples, seed).arrays() for i in range(0, len(images), batch)
    ]
    joined = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    return ScoreBatch.from_arrays(joined, importance_samples)

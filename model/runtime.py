"""The ONNX Runtime side of a bundle: encode, decode, sample, reconstruct and score.

`VAERuntime` loads a verified bundle's two graphs once and serves them; all noise is
drawn on the host from seeded numpy generators, so every result is reproducible from
(input, parameters, seed). The trainer calibrates with this class and the service
answers with it, so both compute the same numbers.

    runtime = VAERuntime(load_bundle("model/zoo/mnist-vae/1"))
    scores = runtime.score(images, importance_samples=64, seed=0)   # images (N, C, H, W)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from model import scores as S
from model.bundle import Bundle
from model.errors import BundleError, InputError
from model.preprocess import png_bits
from model.providers import check_session, select_providers

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]

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
class ImageScores:
    """Per-image scores, each an array (N,), in nats unless named otherwise."""

    neg_elbo: F64
    reconstruction: F64  # -E_q[log p(x|z)], Monte Carlo over the importance samples
    kl: F64  # KL(q(z|x) || p(z)), closed form
    iwae_nll: F64  # -log p(x) by importance sampling with K samples
    bits_per_dim: F64  # of iwae_nll
    mse: F64  # mean squared error per pixel of the reconstruction from the posterior mean
    png_bits: F64  # L(x): the 8-bit image's length as a PNG, in bits (model/preprocess.png_bits)
    complexity: F64  # Serrà et al. (2020): iwae_nll / ln 2 - png_bits, in bits
    reconstructions: F32  # (N, C, H, W): decoded from the posterior mean, the images mse compares
    pixel_nll: F32  # (N, C, H, W): -log p(x_i | z = posterior mean) per pixel, nats; the heatmap
    importance_samples: int = 0

    def as_arrays(self) -> tuple[F64 | F32, ...]:
        """Every per-image array, in ARRAY_FIELDS order (for batching and concatenation)."""
        return tuple(getattr(self, name) for name in ARRAY_FIELDS)

    @classmethod
    def from_arrays(cls, arrays: Sequence[NDArray[np.generic]], importance_samples: int) -> ImageScores:
        return cls(**dict(zip(ARRAY_FIELDS, arrays, strict=True)), importance_samples=importance_samples)  # type: ignore[arg-type]

    def by_name(self, name: str) -> F64:
        if name not in SCORE_NAMES:
            raise KeyError(name)
        value: F64 = getattr(self, name)
        return value


SCORE_NAMES = ("neg_elbo", "reconstruction", "kl", "iwae_nll", "bits_per_dim", "mse", "png_bits", "complexity")
ARRAY_FIELDS = (*SCORE_NAMES, "reconstructions", "pixel_nll")


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
        """(N, C, H, W) in [0, 1] -> mean, log_var (N, D)."""
        mean, log_var = self._encoder.run(None, {"image": np.ascontiguousarray(images, np.float32)})
        return mean, log_var

    def decode_params(self, z: F32) -> F32:
        """(N, D) -> the likelihood's parameters (N, C, H, W): logits or a Gaussian mean."""
        (params,) = self._decoder.run(None, {"z": np.ascontiguousarray(z, np.float32)})
        return params

    def params_to_images(self, params: F32) -> F32:
        """The mean of p(x|z) as images in [0, 1]."""
        if self.manifest.likelihood.kind == "bernoulli":
            return (0.5 * (1.0 + np.tanh(0.5 * params))).astype(np.float32)  # sigmoid, overflow-free
        return np.clip(params, 0.0, 1.0)

    def decode(self, z: F32) -> F32:
        """(N, D) latents -> (N, C, H, W) images in [0, 1]."""
        return self.params_to_images(self.decode_params(self.check_latents(z)))

    def check_latents(self, z: F32) -> F32:
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise InputError(f"latents must have shape [N, {self.latent_dim}], got {list(z.shape)}")
        if not np.isfinite(z).all():
            raise InputError("latents hold NaN or infinite values")
        return z

    # -- what users ask for ---------------------------------------------------------------

    def sample_latents(self, n: int, seed: int, temperature: float = 1.0) -> F32:
        """n draws from the prior N(0, temperature^2 I)."""
        return noise(seed, (n, self.latent_dim)) * np.float32(temperature)

    def sample(self, n: int, seed: int, temperature: float = 1.0) -> tuple[F32, F32]:
        """n images decoded from prior draws; returns (latents, images)."""
        z = self.sample_latents(n, seed, temperature)
        return z, self.decode(z)

    def encode_sample(self, images: F32, seed: int) -> tuple[F32, F32, F32]:
        """mean, log_var and one reparameterised draw z = mean + exp(log_var/2) * eps."""
        mean, log_var = self.encode(images)
        return mean, log_var, sample_posterior(mean, log_var, seed)

    def reconstruct(self, images: F32) -> F32:
        """Decode the posterior mean of each image."""
        mean, _ = self.encode(images)
        return self.decode(mean)

    def log_likelihood(self, images: F32, params: F32) -> F64:
        """log p(x|z) summed over pixels, for images and parameters of the same shape (..., C, H, W)."""
        per_pixel = self.pixel_log_likelihood(images, params)
        return per_pixel.reshape(*per_pixel.shape[:-3], -1).sum(axis=-1)

    def pixel_log_likelihood(self, images: F32, params: F32) -> F64:
        """log p(x_i|z) per pixel, (..., C, H, W)."""
        x = images.astype(np.float64)
        if self.manifest.likelihood.kind == "bernoulli":
            return S.bernoulli_pixel_log_prob(x, params)
        log_scale = np.asarray(self.manifest.likelihood.log_scale or [0.0], dtype=np.float64)
        return S.gaussian_pixel_log_prob(x, params, log_scale)

    def score(self, images: F32, importance_samples: int = 64, seed: int = 0) -> ImageScores:
        """All per-image scores with K = importance_samples draws from q(z|x).

        Every image uses the same K standard-normal draws for a given seed, so an image's
        scores do not depend on what else is in the batch.
        """
        k = importance_samples
        if k < 1:
            raise InputError(f"importance_samples must be >= 1, got {k}")
        images = np.asarray(images, dtype=np.float32)
        mean, log_var = self.encode(images)  # (N, D)
        eps = noise(seed, (k, self.latent_dim))  # (K, D), shared across images
        z = mean[:, None] + np.exp(0.5 * log_var)[:, None] * eps[None]  # (N, K, D)
        flat = z.reshape(-1, self.latent_dim)  # (N*K, D): row r belongs to image r // K
        flat_log_px = np.empty(len(flat))
        # Decode in chunks of rows, whatever N and K: ONNX Runtime's memory grows with the
        # largest call it ever served, so no request may make one call huge.
        for start in range(0, len(flat), self.options.decode_chunk):
            rows = np.arange(start, min(start + self.options.decode_chunk, len(flat)))
            flat_log_px[rows] = self.log_likelihood(images[rows // k], self.decode_params(flat[rows]))
        log_px = flat_log_px.reshape(len(images), k)  # (N, K)
        log_weights = log_px + S.standard_normal_log_prob(z) - S.diag_normal_log_prob(eps[None], log_var[:, None])
        reconstruction = -log_px.mean(axis=1)
        kl = S.kl_to_standard_normal(mean, log_var)
        iwae_nll = -S.iwae_log_likelihood(log_weights)
        recon_params = self.decode_params(mean)  # (N, C, H, W)
        recon_images = self.params_to_images(recon_params)
        mse = ((recon_images.astype(np.float64) - images) ** 2).reshape(len(images), -1).mean(axis=1)
        # The heatmap: which pixels the model cannot explain from the image's own code. The
        # posterior mean rather than the K samples: one deterministic map, the one `mse` uses.
        pixel_nll = (-self.pixel_log_likelihood(images, recon_params)).astype(np.float32)
        lengths = png_bits(images)
        return ImageScores(
            neg_elbo=reconstruction + kl,
            reconstruction=reconstruction,
            kl=kl,
            iwae_nll=iwae_nll,
            bits_per_dim=S.bits_per_dim(iwae_nll, self.input.dims),
            mse=mse,
            png_bits=lengths,
            complexity=S.complexity_corrected(iwae_nll, lengths),
            reconstructions=recon_images,
            pixel_nll=pixel_nll,
            importance_samples=k,
        )


def batched_scores(
    runtime: VAERuntime, images: F32, importance_samples: int, seed: int, batch: int = 256
) -> ImageScores:
    """`runtime.score` over a large array in batches; the result does not depend on `batch`."""
    parts = [runtime.score(images[i : i + batch], importance_samples, seed) for i in range(0, len(images), batch)]
    joined = [np.concatenate(arrays) for arrays in zip(*(p.as_arrays() for p in parts), strict=True)]
    return ImageScores.from_arrays(joined, importance_samples)

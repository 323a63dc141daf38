"""What the service does, whatever the protocol: encode, decode, sample, reconstruct, score,
interpolate and traverse.

Each operation takes parsed inputs (arrays in the model's input spec, plain parameters),
checks them against the service's limits, runs the model through its executor, and
returns a named result. The wire adapters (app/api/v1.py, app/api/v2_models.py) only
translate requests into these calls and results into their formats. Each operation that
sees images reports them to the model's monitor (app/monitoring/), whatever the protocol.

    ops = Operations(settings)
    scored = await ops.score(model, images, importance_samples=None, seed=0)
    scored.decision.is_anomaly           # (N,) bool, or None without a calibration
    located = await ops.score(model, images, localise=True)
    located.localised.masks              # (N, H, W) bool: pixels over the pixel threshold, if anomalous
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from app.errors import ServiceError, check_image_count, check_range, too_much_work
from app.serving.registry import LoadedModel
from app.settings import Settings
from model import latent_paths as paths
from model.decision import Decision, decide, decision_score, default_importance_samples
from model.localise import anomaly_masks, pixel_maps, pixel_threshold_of
from model.runtime import ScoreBatch, sample_posterior

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
DEFAULT_TRAVERSAL_DIMENSIONS = 8  # swept when a request names none: the most active ones


@dataclass(frozen=True)
class Encoded:
    mean: F32  # (N, D) posterior means
    log_var: F32  # (N, D)
    z: F32 | None  # (N, D) one draw from q(z|x) per image, when asked for


@dataclass(frozen=True)
class Sampled:
    latents: F32  # (n, D) draws from N(0, temperature^2 I)
    images: F32  # (n, C, H, W) in [0, 1]


@dataclass(frozen=True)
class Codes:
    """Where a latent tool starts: images, to be encoded to their posterior means, or latents."""

    images: F32 | None = None  # (N, C, H, W) in [0, 1]
    latents: F32 | None = None  # (N, D)


@dataclass(frozen=True)
class Interpolated:
    method: paths.PathMethod
    t: F64  # (n,) positions along the path, 0 at the start, 1 at the end
    latents: F32  # (n, D) the codes on the path; rows 0 and n-1 are the endpoints
    images: F32  # (n, C, H, W) decoded from them, in [0, 1]


@dataclass(frozen=True)
class Traversed:
    base: F32  # (D,) the code every row starts from
    dimensions: list[int]  # the swept dimensions, one row each
    values: F64  # (s,) the values each is set to, in prior standard deviations
    latents: F32  # (k, s, D)
    images: F32  # (k, s, C, H, W) in [0, 1]


@dataclass(frozen=True)
class Localised:
    """Where each image is anomalous, against the calibration's pixel threshold (model/localise.py)."""

    pixel_threshold: float  # nats per pixel
    maps: F64  # (N, H, W) -log p(x_i | z = posterior mean), summed over channels
    masks: NDArray[np.bool_]  # (N, H, W) maps > pixel_threshold, in images the decision flags; else empty


@dataclass(frozen=True)
class Scored:
    scores: ScoreBatch  # every score, the reconstructions and the per-pixel NLL
    decision: Decision  # the decision score, its threshold, p-values, is_anomaly
    importance_samples: int
    seed: int
    localised: Localised | None = None  # when asked for


class Operations:
    """The service's operations on a loaded model, within the limits of `settings`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def encode(self, model: LoadedModel, images: F32, *, sample: bool = False, seed: int = 0) -> Encoded:
        """q(z|x) for images (N, C, H, W); with `sample`, one seeded draw z = mean + exp(log_var/2) * eps."""
        check_image_count(len(images), self.settings.max_images_per_request)
        mean, log_var = await model.encode(images)
        if model.monitor is not None:
            model.monitor.observe_encode(images, mean)
        return Encoded(mean, log_var, sample_posterior(mean, log_var, seed) if sample else None)

    async def decode(self, model: LoadedModel, z: F32) -> F32:
        """Latents (N, D) -> images (N, C, H, W) in [0, 1]; refused beyond MAX_ABS_LATENT (model/runtime.py)."""
        check_image_count(len(z), self.settings.max_images_per_request, "latents")
        return await model.decode(z)

    async def sample(self, model: LoadedModel, n: int, *, seed: int = 0, temperature: float = 1.0) -> Sampled:
        """n images decoded from seeded draws of the prior."""
        check_range("n", n, 1, self.settings.max_samples, "VAESERVE_MAX_SAMPLES")
        z = model.runtime.sample_latents(n, seed, temperature)
        return Sampled(z, await model.decode(z))

    async def score(
        self,
        model: LoadedModel,
        images: F32,
        *,
        importance_samples: int | None = None,
        seed: int = 0,
        score: str | None = None,
        false_positive_rate: float | None = None,
        localise: bool = False,
    ) -> Scored:
        """Every score of images (N, C, H, W) and the anomaly decision (model/decision.py);
        with `localise`, each image's map and mask too.

        K defaults to the calibration's, so the scores compare with its threshold; `score`
        and `false_positive_rate` to the calibration's choice. A score the bundle did not
        calibrate is refused (UncalibratedScoreError), `localise` on a bundle without a pixel
        threshold (NoPixelThresholdError), and work over the budget of
        max_total_importance_samples (N x K), all before any work is done. Masks follow this
        request's decision; the pixel threshold is the calibration's, at its own rate.
        """
        calibration = model.manifest.calibration
        decision_score(calibration, score)
        pixel_threshold = pixel_threshold_of(model.manifest) if localise else None
        check_image_count(len(images), self.settings.max_images_per_request)
        k = self._importance_samples(model, importance_samples)
        if len(images) * k > self.settings.max_total_importance_samples:
            raise too_much_work(len(images), k, self.settings.max_total_importance_samples)
        scores = await model.score(images, k, seed)
        decision = decide(calibration, scores.scores, score, false_positive_rate)
        if model.monitor is not None:
            model.monitor.observe_score(images, scores, decision)
        localised = None
        if pixel_threshold is not None:
            maps = pixel_maps(scores.pixel_nll)
            flagged = decision.is_anomaly if decision.is_anomaly is not None else np.zeros(len(maps), bool)
            localised = Localised(pixel_threshold, maps, anomaly_masks(maps, pixel_threshold, flagged))
        return Scored(scores, decision, k, seed, localised)

    async def reconstruct(
        self, model: LoadedModel, images: F32, *, importance_samples: int | None = None, seed: int = 0
    ) -> Scored:
        """Reconstructions from the posterior mean, with every score and the default decision."""
        return await self.score(model, images, importance_samples=importance_samples, seed=seed)

    async def interpolate(
        self, model: LoadedModel, start_end: Codes, *, steps: int = 8, method: paths.PathMethod = "slerp"
    ) -> Interpolated:
        """`steps` images along the `method` path between two codes (posterior means of two images).

        Both endpoints are included, so the first and last images are the two inputs'
        reconstructions. The decodes go through the model's micro-batcher in one call.
        """
        check_range("steps", steps, 2, self.settings.max_interpolation_steps, "VAESERVE_MAX_INTERPOLATION_STEPS")
        a, b = await self._codes(model, start_end, "interpolate", 2)
        t = paths.path_positions(steps)
        z = paths.interpolate(a, b, t, method)
        return Interpolated(method, t, z, await model.decode(z))

    async def traverse(
        self,
        model: LoadedModel,
        start: Codes,
        *,
        dimensions: Sequence[int] | None = None,
        low: float = -3.0,
        high: float = 3.0,
        steps: int = 7,
    ) -> Traversed:
        """Sweep each of `dimensions` of one code from `low` to `high` (prior standard deviations).

        Without `dimensions`, the model's most active ones (its manifest's latent statistics),
        at most DEFAULT_TRAVERSAL_DIMENSIONS. Every other coordinate keeps the code's value.
        """
        s = self.settings
        dim = model.manifest.latent_dim
        if dimensions is None:
            count = min(DEFAULT_TRAVERSAL_DIMENSIONS, s.max_traversal_dimensions)
            dimensions = paths.most_active_dimensions(model.manifest.latents, dim, count)
        check_range("number of dimensions", len(dimensions), 1, s.max_traversal_dimensions,
                    "VAESERVE_MAX_TRAVERSAL_DIMENSIONS")  # fmt: skip
        for d in dimensions:
            check_range("dimension", d, 0, dim - 1)
        if len(set(dimensions)) != len(dimensions):
            raise ServiceError(422, "invalid-request", "Invalid request", f"dimensions repeat: {list(dimensions)}")
        check_range("steps", steps, 1, s.max_traversal_steps, "VAESERVE_MAX_TRAVERSAL_STEPS")
        check_range("low", low, -s.max_traversal_range, s.max_traversal_range, "VAESERVE_MAX_TRAVERSAL_RANGE")
        check_range("high", high, low, s.max_traversal_range, "VAESERVE_MAX_TRAVERSAL_RANGE")
        (base,) = await self._codes(model, start, "traverse", 1)
        values = paths.traversal_values(low, high, steps)
        grid = paths.traversal_grid(base, dimensions, values)  # (k, s, D)
        images = await model.decode(grid.reshape(-1, dim))
        return Traversed(base, list(dimensions), values, grid, images.reshape(*grid.shape[:2], *images.shape[1:]))

    async def _codes(self, model: LoadedModel, codes: Codes, tool: str, count: int) -> F32:
        """The `count` latent codes a tool starts from: the latents, or the images' posterior means."""
        given = [kind for kind in ("images", "latents") if getattr(codes, kind) is not None]
        if len(given) != 1:
            raise ServiceError(422, "invalid-request", "Invalid request", f"{tool} takes either images or latents")
        rows = codes.images if codes.images is not None else codes.latents
        assert rows is not None
        if len(rows) != count:
            raise ServiceError(
                422, "invalid-request", "Invalid request",
                f"{tool} takes {count} {given[0]}, got {len(rows)}" if count > 1 else
                f"{tool} takes 1 image or latent, got {len(rows)} {given[0]}",
            )  # fmt: skip
        if codes.images is not None:
            return (await self.encode(model, codes.images)).mean  # monitored like any encode
        return model.runtime.check_latents(rows)

    def _importance_samples(self, model: LoadedModel, requested: int | None) -> int:
        k = requested if requested is not None else default_importance_samples(model.manifest.calibration)
        check_range("importance_samples", k, 1, self.settings.max_importance_samples, "VAESERVE_MAX_IMPORTANCE_SAMPLES")
        return k

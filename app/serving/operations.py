"""What the service does, whatever the protocol: encode, decode, sample, reconstruct, score.

Each operation takes parsed inputs (arrays in the model's input spec, plain parameters),
checks them against the service's limits, runs the model through its executor, and
returns a named result. The wire adapters (app/api/v1.py, app/api/v2_models.py) only
translate requests into these calls and results into their formats. Each operation that
sees images reports them to the model's monitor (app/monitoring/), whatever the protocol.

    ops = Operations(settings)
    scored = await ops.score(model, images, importance_samples=None, seed=0)
    scored.decision.is_anomaly           # (N,) bool, or None without a calibration
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from app.errors import check_range
from app.serving.registry import LoadedModel
from app.settings import Settings
from model.decision import Decision, decide, decision_score, default_importance_samples
from model.runtime import ScoreBatch, sample_posterior

F32 = NDArray[np.float32]


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
class Scored:
    scores: ScoreBatch  # every score, the reconstructions and the per-pixel NLL
    decision: Decision  # the decision score, its threshold, p-values, is_anomaly
    importance_samples: int
    seed: int


class Operations:
    """The service's operations on a loaded model, within the limits of `settings`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def encode(self, model: LoadedModel, images: F32, *, sample: bool = False, seed: int = 0) -> Encoded:
        """q(z|x) for images (N, C, H, W); with `sample`, one seeded draw z = mean + exp(log_var/2) * eps."""
        mean, log_var = await model.encode(images)
        if model.monitor is not None:
            model.monitor.observe_encode(images, mean)
        return Encoded(mean, log_var, sample_posterior(mean, log_var, seed) if sample else None)

    async def decode(self, model: LoadedModel, z: F32) -> F32:
        """Latents (N, D) -> images (N, C, H, W) in [0, 1]."""
        check_range("number of latents", len(z), 1, self.settings.max_images_per_request)
        return await model.decode(z)

    async def sample(self, model: LoadedModel, n: int, *, seed: int = 0, temperature: float = 1.0) -> Sampled:
        """n images decoded from seeded draws of the prior."""
        check_range("n", n, 1, self.settings.max_samples)
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
    ) -> Scored:
        """Every score of images (N, C, H, W) and the anomaly decision (model/decision.py).

        K defaults to the calibration's, so the scores compare with its threshold; `score`
        and `false_positive_rate` to the calibration's choice. A score the bundle did not
        calibrate is refused (UncalibratedScoreError) before any work is done.
        """
        calibration = model.manifest.calibration
        decision_score(calibration, score)
        k = self._importance_samples(model, importance_samples)
        scores = await model.score(images, k, seed)
        decision = decide(calibration, scores.scores, score, false_positive_rate)
        if model.monitor is not None:
            model.monitor.observe_score(images, scores, decision)
        return Scored(scores, decision, k, seed)

    async def reconstruct(
        self, model: LoadedModel, images: F32, *, importance_samples: int | None = None, seed: int = 0
    ) -> Scored:
        """Reconstructions from the posterior mean, with every score and the default decision."""
        return await self.score(model, images, importance_samples=importance_samples, seed=seed)

    def _importance_samples(self, model: LoadedModel, requested: int | None) -> int:
        k = requested if requested is not None else default_importance_samples(model.manifest.calibration)
        check_range("importance_samples", k, 1, self.settings.max_importance_samples)
        return k

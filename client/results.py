"""Typed answers: the wire schemas the server answers with (wire/v1.py), plus numpy conveniences.

Parsing with the models the server answers with means client and server cannot disagree on
a field. The arrays are built on demand from the parsed lists, float32 like the model's.
"""

from __future__ import annotations

import base64
import io
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from wire import v1 as s

# Re-exported as they are: nothing to add.
Health = s.Health
Readiness = s.Readiness
ModelList = s.ModelList
ModelSummary = s.ModelSummary
ModelDetail = s.ModelDetail
Limits = s.Limits

T = TypeVar("T")


def _complete(items: list[T | None]) -> list[T] | None:
    """The items when none is missing, else None."""
    return None if any(item is None for item in items) else [item for item in items if item is not None]


def _pngs(images: list[str] | None) -> list[bytes]:
    if images is None:
        raise ValueError("this answer holds arrays, not PNGs: ask with format='png'")
    return [base64.b64decode(image) for image in images]


def _asked(pngs: list[str | None], what: str) -> list[bytes]:
    present = _complete(pngs)
    if present is None:
        raise ValueError(f"this answer holds no {what}s: ask with {what}=True")
    return [base64.b64decode(png) for png in present]


def _pixels(arrays: list[list[list[list[float]]]] | None) -> NDArray[np.float32]:
    if arrays is None:
        raise ValueError("this answer holds PNGs, not arrays: ask with format='array'")
    return np.asarray(arrays, dtype=np.float32)


class Encoding(s.EncodeResponse):
    """POST /v1/encode: per image the mean and log-variance of q(z|x) (and one draw z)."""

    @property
    def mean(self) -> NDArray[np.float32]:
        return np.asarray([r.mean for r in self.results], dtype=np.float32).reshape(-1, self.latent_dim)  # (N, D)

    @property
    def log_var(self) -> NDArray[np.float32]:
        return np.asarray([r.log_var for r in self.results], dtype=np.float32).reshape(-1, self.latent_dim)  # (N, D)

    @property
    def z(self) -> NDArray[np.float32] | None:
        """The draws from q(z|x), (N, D); None unless asked for with sample=True."""
        if any(r.z is None for r in self.results):
            return None
        return np.asarray([r.z for r in self.results], dtype=np.float32).reshape(-1, self.latent_dim)


class Decoded(s.ImagesResponse):
    """POST /v1/decode: base64 PNGs (format='png') or pixel arrays (format='array')."""

    @property
    def pngs(self) -> list[bytes]:
        return _pngs(self.images)

    @property
    def pixels(self) -> NDArray[np.float32]:
        return _pixels(self.arrays)  # (N, C, H, W) in [0, 1]


class Samples(s.SamplesResponse):
    """GET /v1/samples?format=json: the samples as PNGs and the latents they were decoded from."""

    @property
    def pngs(self) -> list[bytes]:
        return _pngs(self.images)

    @property
    def z(self) -> NDArray[np.float32]:
        return np.asarray(self.latents, dtype=np.float32)  # (N, D)


class Reconstruction(s.ReconstructResponse):
    """POST /v1/reconstruct: reconstructions from the posterior mean, with their scores."""

    @property
    def pngs(self) -> list[bytes]:
        return _pngs(_complete([r.image for r in self.results]))

    @property
    def pixels(self) -> NDArray[np.float32]:
        return _pixels(_complete([r.array for r in self.results]))  # (N, C, H, W) in [0, 1]


class Scores(s.ScoreResponse):
    """POST /v1/score: every score per image, the decision score, its threshold and p-value."""

    @property
    def values(self) -> NDArray[np.float64]:
        """The decision score (the one named by `score`) per image, (N,)."""
        return np.asarray([r.score for r in self.results], dtype=np.float64)

    @property
    def p_values(self) -> NDArray[np.float64]:
        """(N,); NaN where the model has no calibration for this score."""
        return np.asarray([np.nan if r.p_value is None else r.p_value for r in self.results], dtype=np.float64)

    @property
    def is_anomaly(self) -> NDArray[np.bool_]:
        """(N,); all False where the model has no calibration for this score."""
        return np.asarray([bool(r.is_anomaly) for r in self.results], dtype=np.bool_)

    @property
    def heatmaps(self) -> list[bytes]:
        """One RGB PNG per image, on the calibration's scale (asked for with heatmap=True)."""
        return _asked([r.heatmap for r in self.results], "heatmap")

    @property
    def masks(self) -> NDArray[np.bool_]:
        """(N, H, W): True where the heatmap is over the calibration's pixel threshold, in images
        judged anomalous (asked for with mask=True)."""
        from PIL import Image  # only here: importing the client stays light (tests/client/test_local.py)

        pngs = _asked([r.mask for r in self.results], "mask")
        return np.stack([np.asarray(Image.open(io.BytesIO(png)), dtype=np.bool_) for png in pngs])

    @property
    def overlays(self) -> list[bytes]:
        """One RGB PNG per image: the input with its heatmap over it (asked for with overlay=True)."""
        return _asked([r.overlay for r in self.results], "overlay")


class Interpolation(s.InterpolateResponse):
    """POST /v1/interpolate: the codes along the path and the images decoded from them."""

    @property
    def pngs(self) -> list[bytes]:
        return _pngs(self.images)

    @property
    def z(self) -> NDArray[np.float32]:
        return np.asarray(self.latents, dtype=np.float32)  # (steps, D)


class Traversal(s.TraverseResponse):
    """POST /v1/traverse: per swept dimension, the codes and the images decoded from them."""

    @property
    def pngs(self) -> list[list[bytes]]:
        """[dimension][step] PNG bytes."""
        return [_pngs(row.images) for row in self.dimensions]

    @property
    def z(self) -> NDArray[np.float32]:
        return np.asarray([row.latents for row in self.dimensions], dtype=np.float32)  # (dimensions, steps, D)

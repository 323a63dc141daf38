"""Paths and sweeps through latent space: interpolation between two codes, traversal grids.

    t = np.linspace(0, 1, 8)
    path = interpolate(z_a, z_b, t, "slerp")                   # (8, D): decode them to morph a into b
    grid = traversal_grid(z, dimensions=[3, 7], values=np.linspace(-3, 3, 7))   # (2, 7, D)

Pure numpy on latent vectors; which codes to start from (posterior means) and how to decode
them is the caller's business. Values of a traversal are in prior standard deviations: the
prior is N(0, I), so a value v sets the dimension to v itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from model.bundle import LatentStatistics
from model.latents import active_dimensions

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
PathMethod = Literal["linear", "slerp"]
PATH_METHODS: tuple[PathMethod, ...] = ("linear", "slerp")

# Below this sin(angle) the two codes are (anti)parallel or one is zero: the great circle
# through them is not defined, and slerp's weights 0/0; the straight line is the limit.
_PARALLEL = 1e-6


def lerp(a: F32, b: F32, t: F64) -> F32:
    """Points (1 - t) a + t b of the segment from a to b: a, b (D,), t (n,) -> (n, D)."""
    a64, b64, t64 = (np.asarray(v, np.float64) for v in (a, b, t))
    return ((1.0 - t64)[:, None] * a64 + t64[:, None] * b64).astype(np.float32)


def slerp(a: F32, b: F32, t: F64) -> F32:
    """Spherical linear interpolation (Shoemake 1985), as White (2016) recommends for latent codes.

    slerp(a, b; t) = sin((1 - t) Ω) / sin Ω · a + sin(t Ω) / sin Ω · b, Ω the angle between a
    and b: the path keeps to the shell where most prior mass lies instead of cutting through
    the low-norm middle. a, b (D,), t (n,) -> (n, D). Falls back to `lerp` when a and b are
    (anti)parallel or one is zero, where the arc is not defined.
    """
    a64, b64, t64 = (np.asarray(v, np.float64) for v in (a, b, t))
    norms = np.linalg.norm(a64) * np.linalg.norm(b64)
    if norms == 0.0:
        return lerp(a, b, t)
    omega = np.arccos(np.clip(a64 @ b64 / norms, -1.0, 1.0))
    sin_omega = np.sin(omega)
    if sin_omega < _PARALLEL:
        return lerp(a, b, t)
    wa = np.sin((1.0 - t64) * omega) / sin_omega  # (n,)
    wb = np.sin(t64 * omega) / sin_omega
    return (wa[:, None] * a64 + wb[:, None] * b64).astype(np.float32)


def interpolate(a: F32, b: F32, t: F64, method: PathMethod) -> F32:
    """The codes at positions t (n,) in [0, 1] on the `method` path from a (D,) to b (D,): (n, D)."""
    if method == "linear":
        return lerp(a, b, t)
    if method == "slerp":
        return slerp(a, b, t)
    raise ValueError(f"unknown path method {method!r}; use one of {PATH_METHODS}")


def path_positions(steps: int) -> F64:
    """`steps` evenly spaced positions from 0 (the start) to 1 (the end), both included."""
    if steps < 2:
        raise ValueError(f"a path needs at least 2 steps, got {steps}")
    return np.linspace(0.0, 1.0, steps)


def traversal_values(low: float, high: float, steps: int) -> F64:
    """`steps` values from `low` to `high` in prior standard deviations, both ends included."""
    if steps < 1:
        raise ValueError(f"a traversal needs at least 1 step, got {steps}")
    return np.linspace(low, high, steps) if steps > 1 else np.asarray([(low + high) / 2.0])


def traversal_grid(base: F32, dimensions: Sequence[int], values: F64) -> F32:
    """`base` (D,) with dimension d set to each value in turn: (len(dimensions), len(values), D).

    Row i sweeps dimensions[i]; every other coordinate keeps base's value, the usual latent
    traversal (Higgins et al. 2017, beta-VAE, Fig. 1).
    """
    base = np.asarray(base, np.float32)
    dims = np.asarray(dimensions, dtype=np.int64)
    if dims.ndim != 1 or np.any(dims < 0) or np.any(dims >= len(base)):
        raise ValueError(f"dimensions must lie in [0, {len(base) - 1}], got {list(dimensions)}")
    grid = np.broadcast_to(base, (len(dims), len(values), len(base))).copy()
    grid[np.arange(len(dims)), :, dims] = np.asarray(values, np.float32)
    return grid


def most_active_dimensions(stats: LatentStatistics | None, latent_dim: int, count: int) -> list[int]:
    """Up to `count` dimensions to traverse by default: the active ones, most active first.

    Without statistics, the first `count` dimensions; when none is active (a collapsed
    posterior), the `count` with the largest variance, so there is still something to show.
    """
    if stats is None:
        return list(range(min(count, latent_dim)))
    active = active_dimensions(stats)
    if active:
        return active[:count]
    return active_dimensions(stats, threshold=-np.inf)[:count]

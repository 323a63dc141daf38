"""Latent paths and sweeps, against independent computations: rotations, quaternion slerp, loops."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from model.bundle import LatentStatistics
from model.latent_paths import (
    interpolate,
    lerp,
    most_active_dimensions,
    path_positions,
    slerp,
    traversal_grid,
    traversal_values,
)


def test_lerp_is_the_straight_segment() -> None:
    a, b = np.array([1.0, -2.0, 0.5], np.float32), np.array([3.0, 2.0, -0.5], np.float32)
    t = np.array([0.0, 0.25, 1.0])
    path = lerp(a, b, t)
    assert path.dtype == np.float32 and path.shape == (3, 3)
    np.testing.assert_allclose(path, [a, [1.5, -1.0, 0.25], b], rtol=1e-6)


def test_slerp_of_unit_vectors_turns_at_a_constant_rate() -> None:
    """In a plane: from angle 0 to angle θ, slerp at t is the unit vector at angle tθ."""
    theta = 2.0
    a, b = np.array([1.0, 0.0], np.float32), np.array([np.cos(theta), np.sin(theta)], np.float32)
    t = np.linspace(0, 1, 9)
    expected = np.stack([np.cos(t * theta), np.sin(t * theta)], axis=1)
    np.testing.assert_allclose(slerp(a, b, t), expected, atol=1e-6)


def test_slerp_agrees_with_scipys_quaternion_slerp() -> None:
    """Unit quaternions in the same hemisphere: scipy's rotation Slerp takes the same arc."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[1] *= np.sign(q[0] @ q[1])  # the shorter arc, which scipy always takes
    t = np.linspace(0, 1, 7)
    ours = slerp(q[0].astype(np.float32), q[1].astype(np.float32), t)
    theirs = Slerp([0, 1], Rotation.from_quat(q))(t).as_quat()  # (x, y, z, w), sign free
    theirs *= np.sign(np.sum(theirs * ours, axis=1, keepdims=True))
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_slerp_of_codes_of_any_norm_stays_in_their_plane_and_hits_both_ends() -> None:
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal(16).astype(np.float32) * s for s in (1.0, 3.0))
    path = slerp(a, b, path_positions(10))
    np.testing.assert_allclose(path[0], a, atol=1e-5)
    np.testing.assert_allclose(path[-1], b, atol=1e-5)
    basis, _ = np.linalg.qr(np.stack([a, b], axis=1).astype(np.float64))  # (16, 2)
    np.testing.assert_allclose(basis @ (basis.T @ path.T), path.T, atol=1e-5)  # in span(a, b)
    # away from the ends its norm is above the straight line's: it keeps off the low-norm middle
    assert np.all(np.linalg.norm(path[1:-1], axis=1) > np.linalg.norm(lerp(a, b, path_positions(10))[1:-1], axis=1))


@pytest.mark.parametrize("b", [[2.0, 4.0], [-1.0, -2.0], [0.0, 0.0]])
def test_slerp_falls_back_to_the_line_where_no_arc_is_defined(b: list[float]) -> None:
    a, b_ = np.array([1.0, 2.0], np.float32), np.array(b, np.float32)
    t = np.linspace(0, 1, 5)
    np.testing.assert_allclose(slerp(a, b_, t), lerp(a, b_, t))
    assert np.isfinite(slerp(a, b_, t)).all()


def test_interpolate_dispatches_and_refuses_unknown_methods() -> None:
    a, b = np.ones(3, np.float32), np.array([1.0, -1.0, 0.0], np.float32)
    t = path_positions(4)
    np.testing.assert_array_equal(interpolate(a, b, t, "linear"), lerp(a, b, t))
    np.testing.assert_array_equal(interpolate(a, b, t, "slerp"), slerp(a, b, t))
    with pytest.raises(ValueError, match="unknown path method 'cubic'"):
        interpolate(a, b, t, "cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2 steps"):
        path_positions(1)


def test_traversal_grid_sets_one_dimension_per_row() -> None:
    base = np.arange(5, dtype=np.float32) / 10
    values = traversal_values(-3, 3, 4)
    np.testing.assert_allclose(values, [-3, -1, 1, 3])
    grid = traversal_grid(base, [3, 0], values)
    assert grid.shape == (2, 4, 5) and grid.dtype == np.float32
    expected = np.empty_like(grid)
    for i, d in enumerate([3, 0]):
        for j, v in enumerate(values):
            expected[i, j] = base
            expected[i, j, d] = v
    np.testing.assert_array_equal(grid, expected)
    np.testing.assert_array_equal(traversal_values(-1, 2, 1), [0.5])  # one step: the middle
    with pytest.raises(ValueError, match=r"dimensions must lie in \[0, 4\], got \[5\]"):
        traversal_grid(base, [5], values)


def _stats(variance: list[float]) -> LatentStatistics:
    d = len(variance)
    return LatentStatistics(split="train", images=10, seed=0, mean=[0.0] * d, variance=variance, kl=[0.0] * d,
                            covariance=np.eye(d).tolist(), reference=[[0.0] * d])  # fmt: skip


def test_most_active_dimensions() -> None:
    assert most_active_dimensions(_stats([0.5, 0.001, 2.0, 0.3]), 4, 8) == [2, 0, 3]  # active only
    assert most_active_dimensions(_stats([0.5, 0.001, 2.0, 0.3]), 4, 2) == [2, 0]
    assert most_active_dimensions(_stats([0.001, 0.003, 0.002]), 3, 2) == [1, 2]  # collapsed: largest first
    assert most_active_dimensions(None, 16, 8) == list(range(8))

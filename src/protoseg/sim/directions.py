"""Directions in three dimensions: perpendicular bases, rotations about an axis, isotropic sampling.

The geometry every stage of the simulation shares (sources, transport, interactions, showers), kept
apart so that none of them imports another for it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["isotropic_directions", "random_perpendicular_basis", "rotate_from_axis"]


def random_perpendicular_basis(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to each (unit) direction and to each other."""
    dx, dy, dz = direction[:, 0], direction[:, 1], direction[:, 2]
    use_y = np.abs(dx) > 0.9
    # e1 = d × x̂ = (0, dz, -dy), or d × ŷ = (-dz, 0, dx) when d is close to x̂
    e1 = np.empty_like(direction)
    e1[:, 0] = np.where(use_y, -dz, 0.0)
    e1[:, 1] = np.where(use_y, 0.0, dz)
    e1[:, 2] = np.where(use_y, dx, -dy)
    e1 /= np.sqrt(np.einsum("ij,ij->i", e1, e1))[:, None]
    e2 = np.empty_like(direction)
    e2[:, 0] = dy * e1[:, 2] - dz * e1[:, 1]
    e2[:, 1] = dz * e1[:, 0] - dx * e1[:, 2]
    e2[:, 2] = dx * e1[:, 1] - dy * e1[:, 0]
    return e1, e2


def rotate_from_axis(axis: np.ndarray, cos_theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Unit vectors at polar angle θ (cos given) and azimuth φ around each unit ``axis``."""
    e1, e2 = random_perpendicular_basis(axis)
    sin_theta = np.sqrt(np.clip(1.0 - cos_theta * cos_theta, 0.0, None))
    out = (cos_theta[:, None] * axis + (sin_theta * np.cos(phi))[:, None] * e1
           + (sin_theta * np.sin(phi))[:, None] * e2)
    return out / np.sqrt(np.einsum("ij,ij->i", out, out))[:, None]


def isotropic_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    cos_theta = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    sin_theta = np.sqrt(1.0 - cos_theta * cos_theta)
    return np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], axis=1)

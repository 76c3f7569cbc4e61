"""Random composite shapes as signed distance functions, for the built-in CO3D-layout dataset.

Each shape is a union of boxes, cylinders, spheres, cones and tori, turned by a random yaw about
the z axis (up) and scaled into the ball of radius 0.9 around the origin, so that it fits the cube
[-1, 1]^3 that its voxel grid covers. Families: chair, table, lamp, L-block, mug, snowman, arch.
Everything is a pure function of a `numpy.random.Generator`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["Shape", "FAMILIES", "random_shape", "voxelize"]

SDF = Callable[[Tensor], Tensor]


def box(center, half) -> SDF:
    c, h = torch.tensor(center, dtype=torch.float32), torch.tensor(half, dtype=torch.float32)

    def f(x: Tensor) -> Tensor:
        q = (x - c.to(x.dtype)).abs() - h.to(x.dtype)
        return q.clamp_min(0).norm(dim=-1) + q.max(-1).values.clamp_max(0)
    return f


def cylinder(center, radius: float, half_height: float) -> SDF:
    """A cylinder along z."""
    c = torch.tensor(center, dtype=torch.float32)

    def f(x: Tensor) -> Tensor:
        p = x - c.to(x.dtype)
        d = torch.stack([p[:, :2].norm(dim=-1) - radius, p[:, 2].abs() - half_height], -1)
        return d.clamp_min(0).norm(dim=-1) + d.max(-1).values.clamp_max(0)
    return f


def sphere(center, radius: float) -> SDF:
    c = torch.tensor(center, dtype=torch.float32)
    return lambda x: (x - c.to(x.dtype)).norm(dim=-1) - radius


def cone(base_center, radius: float, height: float) -> SDF:
    """A cone along +z, its base at `base_center` (a bound, exact on the surface)."""
    c = torch.tensor(base_center, dtype=torch.float32)
    s = math.hypot(radius, height)

    def f(x: Tensor) -> Tensor:
        p = x - c.to(x.dtype)
        r, z = p[:, :2].norm(dim=-1), p[:, 2]
        side = (r * height + (z - height) * radius) / s  # distance to the slanted side's line
        return torch.maximum(side, torch.maximum(-z, z - height))
    return f


def torus(center, major: float, minor: float, axis: str = "z") -> SDF:
    c = torch.tensor(center, dtype=torch.float32)
    perm = {"z": [0, 1, 2], "x": [1, 2, 0], "y": [0, 2, 1]}[axis]

    def f(x: Tensor) -> Tensor:
        p = (x - c.to(x.dtype))[:, perm]
        q = torch.stack([p[:, :2].norm(dim=-1) - major, p[:, 2]], -1)
        return q.norm(dim=-1) - minor
    return f


def union(*parts: SDF) -> SDF:
    return lambda x: torch.stack([p(x) for p in parts], 0).min(0).values


def subtract(a: SDF, b: SDF) -> SDF:
    return lambda x: torch.maximum(a(x), -b(x))


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _chair(rng):
    w, d, seat_h = _u(rng, 0.35, 0.55), _u(rng, 0.35, 0.55), _u(rng, 0.35, 0.6)
    t, leg, back_h = _u(rng, 0.05, 0.09), _u(rng, 0.04, 0.07), _u(rng, 0.4, 0.75)
    parts = [box((0, 0, seat_h), (w, d, t)), box((0, -d + t, seat_h + back_h), (w, t, back_h))]
    parts += [box((sx * (w - leg), sy * (d - leg), seat_h / 2), (leg, leg, seat_h / 2))
              for sx in (-1, 1) for sy in (-1, 1)]
    return union(*parts), (0.0, 0.0, (seat_h + 2 * back_h) / 2)


def _table(rng):
    w, d, h = _u(rng, 0.5, 0.8), _u(rng, 0.3, 0.55), _u(rng, 0.35, 0.6)
    t, leg = _u(rng, 0.04, 0.08), _u(rng, 0.04, 0.08)
    parts = [box((0, 0, h), (w, d, t))]
    parts += [box((sx * (w - leg - 0.02), sy * (d - leg - 0.02), h / 2), (leg, leg, h / 2))
              for sx in (-1, 1) for sy in (-1, 1)]
    return union(*parts), (0.0, 0.0, h / 2)


def _lamp(rng):
    h, r = _u(rng, 0.6, 1.0), _u(rng, 0.25, 0.45)
    parts = [cylinder((0, 0, 0.04), _u(rng, 0.2, 0.35), 0.04), cylinder((0, 0, h / 2), 0.05, h / 2),
             cone((0, 0, h - 0.1), r, _u(rng, 0.25, 0.45))]
    off = _u(rng, 0.0, 0.3)  # an arm puts the shade to one side
    if off > 0.1:
        parts[1:] = [cylinder((0, 0, h / 2), 0.05, h / 2), box((off / 2, 0, h), (off / 2, 0.04, 0.04)),
                     cone((off, 0, h - 0.25), r, _u(rng, 0.25, 0.45))]
    return union(*parts), (0.0, 0.0, h / 2)


def _lblock(rng):
    a, b, t = _u(rng, 0.5, 0.8), _u(rng, 0.3, 0.6), _u(rng, 0.15, 0.3)
    h = _u(rng, 0.15, 0.4)
    return union(box((0, 0, h), (a, t, h)), box((a - t, b, h), (t, b, h))), (0.0, b / 2, h)


def _mug(rng):
    r, h = _u(rng, 0.3, 0.45), _u(rng, 0.35, 0.55)
    body = subtract(cylinder((0, 0, h), r, h), cylinder((0, 0, h + 0.08), r - 0.07, h))
    handle = torus((r + 0.12, 0, h), _u(rng, 0.14, 0.22), 0.05, axis="y")
    return union(body, handle), (0.1, 0.0, h)


def _snowman(rng):
    r1, r2, r3 = _u(rng, 0.3, 0.42), _u(rng, 0.22, 0.3), _u(rng, 0.14, 0.2)
    z1, z2 = r1, 2 * r1 + r2 * 0.8
    z3 = z2 + r2 + r3 * 0.8
    nose = box((0, r3 + 0.08, z3), (0.04, 0.1, 0.04))
    return union(sphere((0, 0, z1), r1), sphere((0, 0, z2), r2), sphere((0, 0, z3), r3), nose), (0.0, 0.0, z3 / 2)


def _arch(rng):
    w, h, t = _u(rng, 0.45, 0.75), _u(rng, 0.5, 0.8), _u(rng, 0.12, 0.25)
    block = box((0, 0, h / 2), (w, t, h / 2))
    hole = cylinder((0, 0, 0), w * _u(rng, 0.5, 0.75), h * 0.8)
    return subtract(block, lambda x: hole(x[:, [0, 2, 1]])), (0.0, 0.0, h / 2)


FAMILIES: dict[str, Callable] = {"chair": _chair, "table": _table, "lamp": _lamp, "lblock": _lblock,
                                 "mug": _mug, "snowman": _snowman, "arch": _arch}


@dataclass
class Shape:
    """A random shape: its signed distance and a colour."""

    family: str
    """Which of FAMILIES it is."""
    sdf: SDF
    """Signed distance (negative inside) of points (N, 3) in the shape's world frame."""
    color: tuple[float, float, float]
    """Its albedo."""


def _fit(sdf: SDF, center, yaw: float, rng) -> SDF:
    """Turn by `yaw` about z, centre, and scale into the ball of radius 0.9 (measured on a coarse grid)."""
    c = torch.tensor(center, dtype=torch.float32)
    cos, sin = math.cos(yaw), math.sin(yaw)
    rot = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    g = torch.linspace(-1.5, 1.5, 40)
    pts = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    inside = pts[sdf(pts + c) < 0]
    radius = float(inside.norm(dim=-1).max()) if len(inside) else 1.0
    s = 0.9 / max(radius + 3.0 / 40, 1e-3) * _u(rng, 0.8, 1.0)

    def f(x: Tensor) -> Tensor:  # world -> shape frame: unscale, unrotate, uncentre
        local = (x / s) @ rot.to(x.dtype) + c.to(x.dtype)
        return sdf(local) * s
    return f


def random_shape(rng: np.random.Generator) -> Shape:
    family = list(FAMILIES)[int(rng.integers(len(FAMILIES)))]
    sdf, center = FAMILIES[family](rng)
    hue = rng.uniform(0, 1)
    color = tuple(float(0.35 + 0.5 * (0.5 + 0.5 * math.cos(2 * math.pi * (hue + k / 3)))) for k in range(3))
    return Shape(family, _fit(sdf, center, float(rng.uniform(0, 2 * math.pi)), rng), color)


def voxelize(sdf: SDF, cube_len: int) -> np.ndarray:
    """Occupancy at the voxel centres of a cube_len^3 grid over [-1, 1]^3, bool indexed [x, y, z]."""
    g = (torch.arange(cube_len, dtype=torch.float32) + 0.5) / cube_len * 2 - 1
    pts = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    return (sdf(pts) <= 0).reshape(cube_len, cube_len, cube_len).numpy()

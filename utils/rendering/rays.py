"""Rays from cameras: pixel rays (pinhole and OpenCV lens distortion), ray-box intersection, frustums.

Camera conventions are those of `utils.rendering.cameras`: OpenCV axes, world-to-camera
`viewmats`, intrinsics in pixels and pixel centres at (i + 0.5, j + 0.5). A ray through pixel
coordinates (u, v) starts at the camera centre and points along R^T K^-1 (u, v, 1) (after removing
the lens distortion), normalised to unit length, so `t` along a ray is the Euclidean distance.

Lens distortion follows OpenCV's model (k1, k2, p1, p2[, k3[, k4, k5, k6]]): a camera-plane point
(x, y) is seen at

    r^2 = x^2 + y^2
    radial = (1 + k1 r^2 + k2 r^4 + k3 r^6) / (1 + k4 r^2 + k5 r^4 + k6 r^6)
    x_d = x radial + 2 p1 x y + p2 (r^2 + 2 x^2)
    y_d = y radial + p1 (r^2 + 2 y^2) + 2 p2 x y

and a pixel is undone to (x, y) by Newton's method on that map.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from utils.errors import UserError
from utils.rendering.cameras import Cameras

__all__ = ["RayBundle", "generate_rays", "pixel_grid", "distort", "undistort", "ray_aabb_intersect",
           "conical_frustum_gaussian", "lift_gaussian"]

PIXEL_RADIUS_SCALE = 2.0 / math.sqrt(12.0)
"""mip-NeRF's cone radius: a pixel's footprint as a disc with the variance of a unit square."""


@dataclass
class RayBundle:
    """A batch of R rays."""

    origins: Tensor
    """Ray origins in world space (R, 3)."""
    directions: Tensor
    """Unit directions in world space (R, 3)."""
    radii: Tensor
    """Cone radius per unit distance along the ray (R, 1): the pixel footprint, for mip-NeRF frustums."""
    camera_indices: Tensor
    """Index of the camera each ray comes from (R,) long, for per-image embeddings and pose refinement."""

    def __len__(self) -> int:
        return self.origins.shape[0]

    def __getitem__(self, idx) -> "RayBundle":
        return RayBundle(*(getattr(self, f.name)[idx] for f in fields(self)))

    def to(self, device: torch.device | str) -> "RayBundle":
        return RayBundle(*(getattr(self, f.name).to(device) for f in fields(self)))

    def split(self, size: int) -> list["RayBundle"]:
        return [self[i:i + size] for i in range(0, len(self), size)]


def pixel_grid(width: int, height: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """Pixel-centre coordinates (H * W, 2) as (u, v), row-major (the order of an image's pixels)."""
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=dtype) + 0.5,
                          torch.arange(width, device=device, dtype=dtype) + 0.5, indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1)], -1)


def _coeffs(dist: Tensor) -> tuple[Tensor, ...]:
    """k1, k2, p1, p2, k3, k4, k5, k6 from (..., 4 | 5 | 8) OpenCV coefficients (missing ones are 0)."""
    if dist.shape[-1] not in (4, 5, 8):
        raise UserError(f"OpenCV distortion needs 4, 5 or 8 coefficients (k1 k2 p1 p2 [k3 [k4 k5 k6]]), "
                        f"got {dist.shape[-1]}")
    full = torch.zeros(dist.shape[:-1] + (8,), dtype=dist.dtype, device=dist.device)
    full[..., :dist.shape[-1]] = dist
    return full.unbind(-1)


def distort(xy: Tensor, dist: Tensor) -> Tensor:
    """Camera-plane points (..., 2) to where the lens shows them, OpenCV's model."""
    k1, k2, p1, p2, k3, k4, k5, k6 = _coeffs(dist)
    x, y = xy.unbind(-1)
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return torch.stack([xd, yd], -1)


def undistort(xy_d: Tensor, dist: Tensor, iterations: int = 10) -> Tensor:
    """Invert `distort` by Newton's method (the Jacobian by autograd-free finite formulas)."""
    xy = xy_d.clone()
    eps = 1e-6
    for _ in range(iterations):
        f = distort(xy, dist) - xy_d
        # 2x2 Jacobian by central differences: cheap, and exact enough for a converging Newton step
        dx = torch.tensor([eps, 0.0], dtype=xy.dtype, device=xy.device)
        dy = torch.tensor([0.0, eps], dtype=xy.dtype, device=xy.device)
        jx = (distort(xy + dx, dist) - distort(xy - dx, dist)) / (2 * eps)
        jy = (distort(xy + dy, dist) - distort(xy - dy, dist)) / (2 * eps)
        a, c = jx.unbind(-1)
        b, d = jy.unbind(-1)
        det = (a * d - b * c)
        det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
        fx, fy = f.unbind(-1)
        xy = xy - torch.stack([(d * fx - b * fy) / det, (a * fy - c * fx) / det], -1)
    return xy


def generate_rays(cameras: Cameras, camera_indices: Tensor | None = None, pixels: Tensor | None = None,
                  distortion: Tensor | None = None) -> RayBundle:
    """Rays of `cameras`: through every pixel centre of every camera (C * H * W rays, camera-major,
    row-major), or through `pixels` (R, 2) (u, v) coordinates of cameras `camera_indices` (R,).

    `distortion` holds OpenCV coefficients, (4 | 5 | 8) for every camera or (C, 4 | 5 | 8).
    """
    device, dtype = cameras.viewmats.device, cameras.viewmats.dtype
    if pixels is None:
        grid = pixel_grid(cameras.width, cameras.height, device, dtype)
        camera_indices = torch.arange(len(cameras), device=device).repeat_interleave(len(grid))
        pixels = grid.repeat(len(cameras), 1)
    elif camera_indices is None:
        raise UserError("generate_rays: pixels need camera_indices (which camera each pixel belongs to)")
    camera_indices = camera_indices.long().to(device)
    pixels = pixels.to(device=device, dtype=dtype)
    Ks = cameras.Ks[camera_indices]
    fx, fy, cx, cy = Ks[:, 0, 0], Ks[:, 1, 1], Ks[:, 0, 2], Ks[:, 1, 2]
    xy = torch.stack([(pixels[:, 0] - cx) / fx, (pixels[:, 1] - cy) / fy], -1)
    if distortion is not None:
        dist = distortion.to(device=device, dtype=dtype)
        dist = dist[camera_indices] if dist.dim() == 2 else dist.expand(len(xy), -1)
        xy = undistort(xy, dist)
    dirs_cam = torch.cat([xy, torch.ones_like(xy[:, :1])], -1)
    c2w = cameras.camtoworlds[camera_indices]
    norm = dirs_cam.norm(dim=-1, keepdim=True)
    directions = (c2w[:, :3, :3] @ (dirs_cam / norm)[..., None]).squeeze(-1)
    origins = c2w[:, :3, 3]
    # one pixel spans 1/fx on the z = 1 plane; along a unit direction that plane sits at |d_cam|
    radii = PIXEL_RADIUS_SCALE / (fx[:, None] * norm)
    return RayBundle(origins, torch.nn.functional.normalize(directions, dim=-1), radii, camera_indices)


def ray_aabb_intersect(origins: Tensor, directions: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Entry and exit distance of each ray through the box `aabb` (xmin ymin zmin xmax ymax zmax),
    and whether it hits it (exit beyond entry and in front of the origin). A miss has t = inf."""
    lo, hi = aabb[:3].to(origins), aabb[3:].to(origins)
    safe = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    inv = 1.0 / safe
    t1, t2 = (lo - origins) * inv, (hi - origins) * inv
    t_near = torch.minimum(t1, t2).amax(-1)
    t_far = torch.maximum(t1, t2).amin(-1)
    hit = (t_far > t_near) & (t_far > 0)
    inf = torch.full_like(t_near, float("inf"))
    return torch.where(hit, t_near, inf), torch.where(hit, t_far, inf), hit


def lift_gaussian(directions: Tensor, t_mean: Tensor, t_var: Tensor, r_var: Tensor, origins: Tensor
                  ) -> tuple[Tensor, Tensor]:
    """A Gaussian along a ray to world space: mean (..., S, 3) and diagonal covariance (..., S, 3)."""
    d = directions[..., None, :]
    mean = origins[..., None, :] + d * t_mean[..., None]
    d2 = d * d
    d_norm2 = d2.sum(-1, keepdim=True).clamp_min(1e-10)
    cov_diag = t_var[..., None] * d2 + r_var[..., None] * (1 - d2 / d_norm2)
    return mean, cov_diag


def conical_frustum_gaussian(origins: Tensor, directions: Tensor, t_starts: Tensor, t_ends: Tensor,
                             radii: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and diagonal covariance of the conical frustums [t0, t1) of cones of radius `radii` per
    unit distance (mip-NeRF, Barron et al. 2021, eq. 7 in the numerically stable form of its
    appendix). origins, directions (R, 3); t_starts, t_ends (R, S); radii (R, 1)."""
    mu = (t_starts + t_ends) / 2
    hw = (t_ends - t_starts) / 2
    mu2, hw2 = mu * mu, hw * hw
    denom = 3 * mu2 + hw2
    t_mean = mu + (2 * mu * hw2) / denom
    t_var = hw2 / 3 - (4.0 / 15.0) * (hw2 * hw2 * (12 * mu2 - hw2)) / (denom * denom)
    r_var = radii * radii * (mu2 / 4 + (5.0 / 12.0) * hw2 - (4.0 / 15.0) * (hw2 * hw2) / denom)
    return lift_gaussian(directions, t_mean, t_var, r_var, origins)

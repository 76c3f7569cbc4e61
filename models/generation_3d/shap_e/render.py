"""Rendering Shap-E's implicit function: views by volume rendering, meshes by marching cubes of its SDF.

Views follow the release: cameras on a circle 4 units from the origin looking slightly down
(`pan_cameras`), rays through the [-1, 1]^3 box, 64 stratified samples then 128 more drawn in
proportion to the coarse weights, composited over the background. The sampling noise is seeded
(0) per batch of rays, as in the release, so a latent always renders to the same image.

Meshes: the signed distance (STF head) on a grid over the box, a border of 'outside' around it,
marching cubes (`utils.visualization.mesh`), and vertex colours from the STF colour head
(converted from sRGB to linear, as the release does).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from models.generation_3d.shap_e.model import ShapEDecoder
from utils.rendering.cameras import Cameras
from utils.rendering.volume_rendering import weights_from_density

BOX = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
MIN_T_RANGE = 1e-3


def _pan_frames(n_views: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera axes x (right), y (down), z (forward) of the release's circle of views, each (n, 3)."""
    xs, ys, zs = [], [], []
    for theta in np.linspace(0, 2 * np.pi, num=n_views):
        z = np.array([np.sin(theta), np.cos(theta), -0.5])
        z /= np.sqrt(np.sum(z ** 2))
        x = np.array([np.cos(theta), -np.sin(theta), 0.0])
        xs.append(x), ys.append(np.cross(z, x)), zs.append(z)
    return np.stack(xs), np.stack(ys), np.stack(zs)


def pan_cameras(size: int, n_views: int = 20, fov: float = 0.7, distance: float = 4.0) -> Cameras:
    """The views as `utils.rendering` cameras: `n_views` around the z axis (the first and last at
    the same angle, as released), `distance` from the origin, looking 0.5 down; pixels span the
    field of view corner to corner (pixel i at (i / (size - 1)) * 2 - 1 of tan(fov / 2))."""
    xs, ys, zs = _pan_frames(n_views)
    c2w = np.tile(np.eye(4), (n_views, 1, 1))
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = xs, ys, zs, -zs * distance
    f = (size - 1) / (2 * math.tan(fov / 2))
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]], dtype=torch.float32).expand(n_views, 3, 3)
    return Cameras(torch.linalg.inv(torch.tensor(c2w)).float(), K.clone(), size, size)


def pan_rays(size: int, n_views: int = 20, fov: float = 0.7, distance: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(origins, directions), each (n_views * size * size, 3), of `pan_cameras`' pixels, in the
    release's float32 arithmetic: the importance sampling picks bins from the coarse weights, so a
    ray one rounding step off can land its fine samples elsewhere."""
    xs, ys, zs = (torch.from_numpy(a).float() for a in _pan_frames(n_views))
    idx = torch.arange(size * size)
    coords = torch.stack([idx % size, torch.div(idx, size, rounding_mode="trunc")], 1).float()
    fracs = (coords / (size - 1)) * 2 - 1
    fracs = fracs * torch.tan(torch.tensor(fov / 2, dtype=torch.float32))
    dirs = zs[:, None] + xs[:, None] * fracs[None, :, :1] + ys[:, None] * fracs[None, :, 1:]
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = (-zs * distance)[:, None].expand_as(dirs)
    return origins.reshape(-1, 3), dirs.reshape(-1, 3)


def box_range(origins: torch.Tensor, dirs: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, ...]:
    """(t0, t1, hit) of each ray through the [-1, 1]^3 box, each (R, 1), with the release's
    arithmetic: every direction component pushed `eps` away from zero before dividing (this moves
    the ends by up to ~1e-4 against an exact slab test such as `utils.rendering.rays.ray_aabb_intersect`,
    and the renders with them), t0 at least 0, a range shorter than 1e-3 a miss (then t in [0, 1])."""
    lo, hi = BOX[:3].to(origins), BOX[3:].to(origins)
    safe = torch.where(dirs < 0, dirs - eps, dirs + eps)
    ta, tb = (lo - origins) / safe, (hi - origins) / safe
    t0 = torch.minimum(ta, tb).amax(-1, keepdim=True).clamp_min(0.0)
    t1 = torch.maximum(ta, tb).amin(-1, keepdim=True)
    hit = t0 + MIN_T_RANGE < t1
    return torch.where(hit, t0, torch.zeros_like(t0)), torch.where(hit, t1, torch.ones_like(t1)), hit


def _partition(t0: torch.Tensor, t1: torch.Tensor, ts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Interval ends around each sample: midpoints between samples, the range ends outside."""
    mids = (ts[:, 1:] + ts[:, :-1]) * 0.5
    return torch.cat([t0, mids], 1), torch.cat([mids, t1], 1)


def _stratified(t0: torch.Tensor, t1: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    u = torch.linspace(0, 1, n, dtype=t0.dtype, device=t0.device)[None]
    ts = t0 * (1.0 - u) + t1 * u
    mids = 0.5 * (ts[:, 1:] + ts[:, :-1])
    lower, upper = torch.cat([t0, mids], 1), torch.cat([mids, t1], 1)
    r = torch.rand(ts.shape, generator=gen).to(ts)
    return lower + (upper - lower) * r


def _importance(t0: torch.Tensor, t1: torch.Tensor, ts: torch.Tensor, weights: torch.Tensor, n: int,
                gen: torch.Generator, floor: float = 1e-5) -> torch.Tensor:
    """n samples: a bin drawn with probability proportional to its weight (+ floor), then a
    uniform point inside it; sorted."""
    lower, upper = _partition(t0, t1, ts)
    w = weights + floor
    cdf = torch.cumsum(w / w.sum(-1, keepdim=True), -1)
    u = torch.rand(cdf.shape[0], n, generator=gen).to(cdf)
    idx = torch.searchsorted(cdf, u).clamp(0, ts.shape[1] - 1)
    r = torch.rand(idx.shape, generator=gen).to(ts)
    lo, hi = torch.gather(lower, 1, idx), torch.gather(upper, 1, idx)
    return torch.sort(lo + (hi - lo) * r, dim=1).values


def _integrate(decoder: ShapEDecoder, weights: dict, origins: torch.Tensor, dirs: torch.Tensor, t0, t1, hit,
               ts: torch.Tensor, fine: bool, background: torch.Tensor):
    pos = origins[:, None] + ts[..., None] * dirs[:, None]
    out = decoder.query(pos.reshape(1, -1, 3).to(next(decoder.parameters()).dtype), weights, fine=fine)
    r, s = ts.shape
    density = out["density"].reshape(r, s).to(ts.dtype)
    colour = out["channels"].reshape(r, s, 3).to(ts.dtype)
    lower, upper = _partition(t0, t1, ts)
    w, trans, _ = weights_from_density(lower, upper, density, backend="torch")
    rgb = (w[..., None] * colour).sum(1)
    remaining = torch.exp(-(density * (upper - lower)).sum(1, keepdim=True))
    remaining = torch.where(hit, remaining, torch.ones_like(remaining))
    rgb = torch.where(hit, rgb, torch.zeros_like(rgb)) + remaining * background
    return rgb, w


@torch.no_grad()
def render_views(decoder: ShapEDecoder, latent: torch.Tensor, size: int = 64, n_views: int = 20,
                 ray_batch: int = 4096, coarse: int = 64, fine: int = 128,
                 progress: Callable | None = None) -> torch.Tensor:
    """One latent (1, n_ctx, d) -> (n_views, size, size, 3) renders in [0, 1] of the `pan_cameras` views."""
    weights = decoder.project(latent)
    device = latent.device
    origins, dirs = (t.to(device) for t in pan_rays(size, n_views))
    background = torch.tensor(decoder.config.background, device=device)
    images = []
    starts = range(0, origins.shape[0], ray_batch)
    for start in (progress(starts) if progress else starts):
        o, d = origins[start:start + ray_batch], dirs[start:start + ray_batch]
        t0, t1, hit = box_range(o, d)
        gen = torch.Generator().manual_seed(0)
        ts = _stratified(t0, t1, coarse, gen)
        _, w = _integrate(decoder, weights, o, d, t0, t1, hit, ts, False, background)
        ts_fine = _importance(t0, t1, ts, w, fine, gen)
        ts_all = torch.sort(torch.cat([ts_fine, ts], 1), dim=1).values
        rgb, _ = _integrate(decoder, weights, o, d, t0, t1, hit, ts_all, True, background)
        images.append(rgb)
    return torch.cat(images).reshape(n_views, size, size, 3)


def srgb_to_linear(u: torch.Tensor) -> torch.Tensor:
    return torch.where(u <= 0.04045, u / 12.92, ((u + 0.055) / 1.055) ** 2.4)


def grid_points(size: int, device=None) -> torch.Tensor:
    """(size^3, 3) points of a grid over [-1, 1]^3, x slowest, z fastest."""
    axis = torch.linspace(-1.0, 1.0, size, device=device)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


@torch.no_grad()
def sdf_grid(decoder: ShapEDecoder, weights: dict, size: int, query_batch: int = 4096,
             progress: Callable | None = None) -> torch.Tensor:
    """(size, size, size) signed distance (positive inside) on the grid over the box."""
    device = next(decoder.parameters()).device
    pts = grid_points(size, device)
    out = []
    starts = range(0, pts.shape[0], query_batch)
    for s in (progress(starts) if progress else starts):
        out.append(decoder.query(pts[None, s:s + query_batch], weights, mode="stf")["sdf"][0, :, 0].float())
    return torch.cat(out).reshape(size, size, size)


@torch.no_grad()
def extract_mesh(decoder: ShapEDecoder, latent: torch.Tensor, size: int = 128, query_batch: int = 4096,
                 progress: Callable | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One latent -> (vertices (V, 3), faces (F, 3), vertex colours (V, 3) in [0, 1]).

    The grid gets a border of 'outside' (-1) so every surface closes; as released, the padded
    grid of size + 2 points spans the box."""
    from utils.visualization.mesh import marching_cubes

    weights = decoder.project(latent)
    field = sdf_grid(decoder, weights, size, query_batch, progress)
    padded = torch.full((size + 2,) * 3, -1.0)
    padded[1:-1, 1:-1, 1:-1] = field.cpu()
    verts, faces = marching_cubes(padded, level=0.0, bounds=((-1.0,) * 3, (1.0,) * 3))
    if len(verts) == 0:
        return verts, faces, np.zeros((0, 3), np.float32)
    colours = vertex_colours(decoder, weights, torch.from_numpy(verts), query_batch)
    return verts, faces, colours


@torch.no_grad()
def vertex_colours(decoder: ShapEDecoder, weights: dict, verts: torch.Tensor, query_batch: int = 4096) -> np.ndarray:
    device = next(decoder.parameters()).device
    dtype = next(decoder.parameters()).dtype
    out = []
    for s in range(0, verts.shape[0], query_batch):
        q = verts[None, s:s + query_batch].to(device, dtype)
        out.append(srgb_to_linear(decoder.query(q, weights, mode="stf")["channels"][0].float()))
    return torch.cat(out).cpu().numpy()

"""Renders of occupancy grids and implicit surfaces: a ray marcher with Lambert shading, and panels.

`march_surface(field, origins, dirs, ...)` finds where rays first cross into a field that is
negative inside (a signed distance, or 0.5 - occupancy); `shade` lights the hits. `render_voxels`
draws a grid indexed [x, y, z] filling the cube [-1, 1]^3 (z up) from an orbit camera, and
`voxel_panel` puts input views next to predicted and true grids, one row per object.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from utils.rendering.cameras import Cameras, camera_rays, intrinsics_from_fov, look_at

__all__ = ["march_surface", "sphere_trace", "shade", "render_field", "grid_field", "render_voxels", "voxel_panel", "orbit_camera"]

Field = Callable[[Tensor], Tensor]


def march_surface(field: Field, origins: Tensor, dirs: Tensor, near: float, far: float, n_samples: int = 96,
                  chunk: int = 1 << 16) -> tuple[Tensor, Tensor]:
    """(hit (R,), t (R,)) of rays (R, 3) against the surface field(x) = 0, negative inside.

    Samples `n_samples` points evenly in [near, far], takes the first sign change and refines the
    crossing by linear interpolation between the two samples around it.
    """
    ts = torch.linspace(near, far, n_samples, dtype=origins.dtype, device=origins.device)
    hits, tvals = [], []
    for i in range(0, origins.shape[0], chunk):
        o, d = origins[i:i + chunk], dirs[i:i + chunk]
        pts = o[:, None, :] + d[:, None, :] * ts[None, :, None]
        f = field(pts.reshape(-1, 3)).reshape(pts.shape[:2])
        inside = f < 0
        hit = inside.any(1)
        k = torch.where(hit, inside.float().argmax(1), torch.zeros_like(hit, dtype=torch.long))
        k0 = (k - 1).clamp_min(0)
        f1, f0 = f.gather(1, k[:, None])[:, 0], f.gather(1, k0[:, None])[:, 0]
        t1, t0 = ts[k], ts[k0]
        w = torch.where((f0 - f1).abs() > 1e-12, f0 / (f0 - f1).clamp_min(1e-12), torch.zeros_like(f0))
        t = torch.where(k > 0, t0 + w.clamp(0, 1) * (t1 - t0), t1)
        hits.append(hit)
        tvals.append(t)
    return torch.cat(hits), torch.cat(tvals)


def sphere_trace(sdf: Field, origins: Tensor, dirs: Tensor, near: float, far: float, iters: int = 64,
                 eps: float = 1e-3) -> tuple[Tensor, Tensor]:
    """(hit (R,), t (R,)) of unit-speed rays (R, 3) against a signed distance (a lower bound of the distance
    to the surface, negative inside), stepping by the distance itself; only unfinished rays are evaluated."""
    t = torch.full((origins.shape[0],), float(near), dtype=origins.dtype, device=origins.device)
    hit = torch.zeros_like(t, dtype=torch.bool)
    alive = torch.ones_like(hit)
    for _ in range(iters):
        idx = alive.nonzero()[:, 0]
        if idx.numel() == 0:
            break
        d = sdf(origins[idx] + dirs[idx] * t[idx, None])
        done = d < eps
        hit[idx[done]] = True
        t[idx[~done]] += d[~done].clamp_min(eps)
        alive[idx[done]] = False
        alive[idx[t[idx] > far]] = False
    return hit, t


def field_normals(field: Field, points: Tensor, eps: float = 1e-2) -> Tensor:
    """Unit outward normals (the field's gradient) by central differences."""
    offsets = torch.eye(3, dtype=points.dtype, device=points.device) * eps
    grads = [field(points + e) - field(points - e) for e in offsets]
    return torch.nn.functional.normalize(torch.stack(grads, -1), dim=-1)


def shade(normals: Tensor, view_dirs: Tensor, albedo: Tensor, ambient: float = 0.3) -> Tensor:
    """Lambert shading from a light over the viewer's shoulder; colours (R, 3) in [0, 1]."""
    light = torch.nn.functional.normalize(-view_dirs + torch.tensor([0.3, 0.2, 0.8], dtype=view_dirs.dtype,
                                                                     device=view_dirs.device), dim=-1)
    lambert = (normals * light).sum(-1).clamp_min(0)
    return (albedo * (ambient + (1 - ambient) * lambert[:, None])).clamp(0, 1)


def render_field(field: Field, cameras: Cameras, color=(0.55, 0.65, 0.85), background=(1.0, 1.0, 1.0),
                 near: float | None = None, far: float | None = None, n_samples: int = 96,
                 normal_eps: float = 1e-2, signed_distance: bool = False) -> dict[str, Tensor]:
    """Render a field's surface from each camera: {"rgb" (C, H, W, 3), "mask" (C, H, W), "depth" (C, H, W)}.

    Depth is the camera-space z (OpenCV) of the hit, 0 where a ray misses. near/far default to the
    distance of each camera's centre to the origin minus / plus sqrt(3) (the cube [-1, 1]^3).
    `signed_distance=True` sphere-traces a true signed distance instead of sampling `n_samples` points.
    """
    origins, dirs = camera_rays(cameras, normalize=True)
    C, H, W = origins.shape[:3]
    dist = float(cameras.centers.norm(dim=-1).max())
    near = max(1e-3, dist - math.sqrt(3)) if near is None else near
    far = dist + math.sqrt(3) if far is None else far
    o, d = origins.reshape(-1, 3), dirs.reshape(-1, 3)
    if signed_distance:
        hit, t = sphere_trace(field, o, d, near, far)
    else:
        hit, t = march_surface(field, o, d, near, far, n_samples)
    pts = o + d * t[:, None]
    rgb = torch.tensor(background, dtype=o.dtype).expand(o.shape[0], 3).clone()
    if hit.any():
        normals = field_normals(field, pts[hit], normal_eps)
        albedo = torch.as_tensor(color, dtype=o.dtype)
        albedo = albedo.expand(int(hit.sum()), 3) if albedo.ndim == 1 else albedo
        rgb[hit] = shade(normals, d[hit], albedo)
    forward = cameras.camtoworlds[:, :3, 2]  # OpenCV z axis in world coordinates
    depth = (d.reshape(C, -1, 3) * forward[:, None, :]).sum(-1).reshape(-1) * t
    depth = torch.where(hit, depth, torch.zeros_like(depth))
    return {"rgb": rgb.reshape(C, H, W, 3), "mask": hit.reshape(C, H, W), "depth": depth.reshape(C, H, W)}


def grid_field(grid: Tensor, threshold: float = 0.5) -> Field:
    """threshold - trilinear occupancy of a grid (D, H, W) indexed [x, y, z] over [-1, 1]^3 (outside: empty)."""
    vol = grid.float()[None, None]  # (1, 1, X, Y, Z)

    def field(x: Tensor) -> Tensor:
        # grid_sample's last coordinate indexes the first volume axis: (z, y, x) -> axes (X, Y, Z)
        g = x.float()[:, [2, 1, 0]].reshape(1, -1, 1, 1, 3)
        occ = torch.nn.functional.grid_sample(vol, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        return threshold - occ.reshape(-1).to(x.dtype)

    return field


def orbit_camera(size: int, azimuth: float = 45.0, elevation: float = 30.0, distance: float = 3.6,
                 fov: float = 40.0) -> Cameras:
    """One camera on a z-up orbit around the origin (degrees)."""
    az, el = math.radians(azimuth), math.radians(elevation)
    eye = torch.tensor([[distance * math.cos(el) * math.cos(az), distance * math.cos(el) * math.sin(az),
                         distance * math.sin(el)]])
    c2w = look_at(eye, torch.zeros(1, 3), torch.tensor([0.0, 0.0, 1.0]))
    return Cameras(torch.linalg.inv(c2w), intrinsics_from_fov(math.radians(fov), size, size)[None], size, size)


def render_voxels(grid, size: int = 128, azimuth: float = 45.0, elevation: float = 30.0, threshold: float = 0.5,
                  color=(0.55, 0.65, 0.85)) -> Image.Image:
    """A shaded render of an occupancy grid indexed [x, y, z] (bool or probabilities) filling [-1, 1]^3."""
    g = torch.as_tensor(np.asarray(grid) if not torch.is_tensor(grid) else grid).detach().cpu().float()
    n = max(g.shape)
    out = render_field(grid_field(g, threshold), orbit_camera(size, azimuth, elevation), color=color,
                       n_samples=max(64, 3 * n), normal_eps=1.0 / n)
    return Image.fromarray((out["rgb"][0].numpy() * 255 + 0.5).astype(np.uint8))


def _to_image(x, size: int) -> Image.Image:
    if isinstance(x, Image.Image):
        im = x.convert("RGB")
    else:
        arr = torch.as_tensor(x).detach().cpu().float()
        if arr.ndim == 3 and arr.shape[0] in (1, 3):
            arr = arr.permute(1, 2, 0)
        arr = arr.expand(*arr.shape[:2], 3) if arr.shape[-1] == 1 else arr
        im = Image.fromarray((arr.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
    return im.resize((size, size), Image.BILINEAR) if im.size != (size, size) else im


def voxel_panel(rows: Sequence[tuple[Sequence, object, object | None]], size: int = 96, threshold: float = 0.5,
                gap: int = 4) -> Image.Image:
    """One row per object: its input views, the predicted grid and (when given) the true one."""
    n_cols = max(len(views) + 1 + (true is not None) for views, _, true in rows)
    canvas = Image.new("RGB", (n_cols * (size + gap) + gap, len(rows) * (size + gap) + gap), (255, 255, 255))
    for r, (views, pred, true) in enumerate(rows):
        tiles = [_to_image(v, size) for v in views]
        tiles.append(render_voxels(pred, size, threshold=threshold, color=(0.85, 0.55, 0.35)))
        if true is not None:
            tiles.append(render_voxels(true, size, threshold=0.5, color=(0.45, 0.7, 0.45)))
        for c, tile in enumerate(tiles):
            x = gap + c * (size + gap) if c < len(views) else gap + (n_cols - len(tiles) + c) * (size + gap)
            canvas.paste(tile, (x, gap + r * (size + gap)))
    return canvas

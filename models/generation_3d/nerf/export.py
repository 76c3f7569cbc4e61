"""Exports of a trained field: a coloured mesh by marching cubes of the density, and a point cloud.

- `extract_mesh`: the density on a regular grid over the scene box, its `threshold` level set by
  `utils.visualization.mesh.marching_cubes`, each vertex coloured by the field seen from outside
  the surface (along minus the vertex normal).
- `extract_point_cloud`: training-style renders of given cameras, each opaque pixel lifted to its
  expected depth along its ray, with its rendered colour (as nerfstudio's point-cloud export).

Both return model-space coordinates; the pipeline maps them back to the data's world units.
"""
from __future__ import annotations

import numpy as np
import torch

from utils.rendering.cameras import Cameras
from utils.rendering.rays import generate_rays

from .model import NeRFModel

__all__ = ["density_grid", "extract_mesh", "extract_point_cloud", "vertex_normals"]


@torch.no_grad()
def density_grid(model: NeRFModel, resolution: int = 128, bounds: tuple | None = None,
                 chunk: int = 1 << 16) -> tuple[torch.Tensor, tuple]:
    """Densities (R, R, R) at the grid points spanning `bounds` (default: the model's box)."""
    aabb = model.aabb.detach().cpu() if bounds is None else torch.tensor(
        [*bounds[0], *bounds[1]], dtype=torch.float32)
    lo, hi = aabb[:3], aabb[3:]
    axes = [torch.linspace(float(lo[i]), float(hi[i]), resolution) for i in range(3)]
    pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    voxel = (hi - lo) / max(resolution - 1, 1)
    var = (voxel ** 2 / 12).expand(min(chunk, len(pts)), 3)
    device = model.aabb.device
    out = []
    for i in range(0, len(pts), chunk):
        p = pts[i:i + chunk].to(device)
        out.append(model.density(p, var[:len(p)].to(device)).float().cpu())
    return torch.cat(out).reshape(resolution, resolution, resolution), (tuple(lo.tolist()), tuple(hi.tolist()))


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals per vertex: the area-weighted sum of the normals of its faces."""
    a, b, c = (verts[faces[:, i]].astype(np.float64) for i in range(3))
    fn = np.cross(b - a, c - a)
    vn = np.zeros(verts.shape, dtype=np.float64)
    for i in range(3):
        np.add.at(vn, faces[:, i], fn)
    return (vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)).astype(np.float32)


@torch.no_grad()
def extract_mesh(model: NeRFModel, resolution: int = 128, threshold: float = 10.0, bounds: tuple | None = None,
                 chunk: int = 1 << 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (V, 3), faces (F, 3), colours (V, 3) in [0, 1]) of the surface density = threshold."""
    from utils.visualization.mesh import marching_cubes

    grid, box = density_grid(model, resolution, bounds, chunk)
    verts, faces = marching_cubes(grid.numpy(), threshold, box)
    if len(verts) == 0:
        return verts, faces, np.zeros((0, 3), np.float32)
    normals = vertex_normals(verts, faces)
    device = model.aabb.device
    colors = []
    voxel = (np.array(box[1]) - np.array(box[0])) / max(resolution - 1, 1)
    var = torch.tensor(voxel ** 2 / 12, dtype=torch.float32, device=device)
    for i in range(0, len(verts), chunk):
        v = torch.from_numpy(verts[i:i + chunk]).to(device)
        # look at the surface from half a voxel outside it
        n = torch.from_numpy(normals[i:i + chunk]).to(device)
        x = v + n * float(voxel.mean()) * 0.5
        colors.append(model.color(x, -n, var.expand_as(x)).clamp(0, 1).float().cpu())
    return verts, faces, torch.cat(colors).numpy()


@torch.no_grad()
def extract_point_cloud(model: NeRFModel, cameras: Cameras, num_points: int = 100_000, min_opacity: float = 0.9,
                        chunk: int = 4096, generator: torch.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(points (N, 3), colours (N, 3)): opaque pixels of `cameras` lifted to their expected depth."""
    device = model.aabb.device
    pts, cols = [], []
    for i in range(len(cameras)):
        rays = generate_rays(cameras[i].to(device))
        for r in rays.split(chunk):
            out = model(r)
            keep = out["opacity"][:, 0] >= min_opacity
            pts.append((r.origins + r.directions * out["depth"])[keep].cpu())
            cols.append(out["rgb"][keep].clamp(0, 1).cpu())
    points, colors = torch.cat(pts), torch.cat(cols)
    if len(points) > num_points:
        pick = torch.randperm(len(points), generator=generator)[:num_points]
        points, colors = points[pick], colors[pick]
    return points.numpy(), colors.numpy()

"""A built-in multi-view data set of random primitives (sphere, box, torus), so GET3D's tiny preset can
train offline. Each shape is the zero set of an analytic SDF extracted by DMTet on a regular grid, seen
from cameras on a sphere of radius 1.2 around the origin (GET3D's ShapeNet radius) at random
rotation and elevation; an image is the mesh's normal-shaded grey on a black background, plus its
silhouette. `camera_from_angles` uses GET3D's angle convention (rotation about the vertical y axis,
elevation = polar angle from +y) with an OpenGL look-at (camera looks down -z, y up); its
matrices equal those of GET3D's training camera sampler for the same angles (a golden test).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from models.generation_3d.get3d.render import render_mesh
from utils.rendering.dmtet import marching_tetrahedra, regular_tet_grid

__all__ = ["KINDS", "camera_from_angles", "primitive_sdf", "render_primitives"]

KINDS = ("sphere", "box", "torus")
"""The primitives drawn."""
RADIUS = 1.2
"""Camera distance from the origin."""


def camera_from_angles(rotation: Tensor, elevation: Tensor, radius: float = RADIUS) -> Tensor:
    """(N, 4, 4) world-to-camera matrices of cameras looking at the origin."""
    theta = -rotation - math.pi / 2
    phi = elevation.clamp(1e-5, math.pi - 1e-5)
    eye = torch.stack([radius * torch.sin(phi) * torch.cos(theta), radius * torch.cos(phi),
                       radius * torch.sin(phi) * torch.sin(theta)], -1)
    back = torch.nn.functional.normalize(eye, dim=-1)  # camera +z points away from the target
    up = torch.tensor([0.0, 1.0, 0.0]).expand_as(back)
    right = torch.nn.functional.normalize(torch.cross(up, back, dim=-1), dim=-1)
    true_up = torch.cross(back, right, dim=-1)
    rot = torch.stack([right, true_up, back], 1)  # rows: camera axes in world coordinates
    mv = torch.eye(4).repeat(len(eye), 1, 1)
    mv[:, :3, :3] = rot
    mv[:, :3, 3] = -(rot @ eye.unsqueeze(-1)).squeeze(-1)
    return mv


def primitive_sdf(kind: str, points: Tensor, size: float) -> Tensor:
    """SDF (> 0 inside, GET3D's sign) of a primitive of scale `size` centred at the origin."""
    if kind == "sphere":
        return size - points.norm(dim=-1)
    if kind == "box":
        q = points.abs() - size * 0.8
        outside = q.clamp(min=0).norm(dim=-1) + q.max(-1).values.clamp(max=0)
        return -outside
    if kind == "torus":
        ring = torch.stack([points[..., [0, 2]].norm(dim=-1) - size * 0.8, points[..., 1]], -1)
        return size * 0.35 - ring.norm(dim=-1)
    raise ValueError(f"unknown primitive {kind!r}; choose one of {', '.join(KINDS)}")


def render_primitives(n_shapes: int, n_views: int, resolution: int, seed: int = 0, grid_res: int = 16) -> dict:
    """Images (S, V, 3, H, W) in [0, 1], masks (S, V, 1, H, W), camera angles (S, V, 2), kinds (S,)."""
    g = torch.Generator().manual_seed(seed)
    grid = regular_tet_grid(grid_res, scale=1.6)
    images, masks, angles, kinds = [], [], [], []
    for _ in range(n_shapes):
        kind = KINDS[int(torch.randint(len(KINDS), (1,), generator=g))]
        size = 0.25 + 0.15 * float(torch.rand((), generator=g))
        v, f = marching_tetrahedra(grid.verts, primitive_sdf(kind, grid.verts, size), grid.tets)
        rot = torch.rand(n_views, generator=g) * 2 * math.pi
        elev = math.pi / 2 - torch.rand(n_views, generator=g) * math.radians(40)  # from the side to 40 deg above
        mv = camera_from_angles(rot, elev)
        with torch.no_grad():
            out = render_mesh(v, f, mv, resolution, soft=False)
            n = torch.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=-1)
            n = torch.nn.functional.normalize(n, dim=-1)
            tri = out["rast"][..., 3].long() - 1
            normal_world = n[tri.clamp(min=0)]
            normal_cam = torch.einsum("nij,nhwj->nhwi", mv[:, :3, :3], normal_world)
            shade = (0.25 + 0.75 * normal_cam[..., 2].clamp(min=0)) * (tri >= 0)
        images.append(shade.unsqueeze(1).expand(-1, 3, -1, -1))
        masks.append(out["hard_mask"].permute(0, 3, 1, 2))
        angles.append(torch.stack([rot, elev], -1))
        kinds.append(kind)
    return {"images": torch.stack(images), "masks": torch.stack(masks), "angles": torch.stack(angles), "kinds": kinds}

"""GET3D's image formation on the PyTorch rasterizer: GET3D's camera puts a sphere where the closed form says,
up is the top rows, depth is the camera distance, and the textured image of the tiny generator is zero off the
mask and differentiable in the texture latents."""
from __future__ import annotations

import math

import torch

from models.generation_3d.get3d.config import TINY
from models.generation_3d.get3d.model import GET3DGenerator
from models.generation_3d.get3d.render import FOVY, render_mesh, texture_image
from utils.rendering.dmtet import marching_tetrahedra, regular_tet_grid


def _view(distance):
    mv = torch.eye(4)
    mv[2, 3] = -distance  # the camera at (0, 0, distance) looking down -z
    return mv[None]


def test_sphere_renders_as_the_closed_form_disk_with_up_at_the_top():
    grid = regular_tet_grid(14, scale=1.0)
    centre = torch.tensor([0.0, 0.1, 0.0])
    v, f = marching_tetrahedra(grid.verts, 0.3 - (grid.verts - centre).norm(dim=-1), grid.tets)
    res = 48
    out = render_mesh(v, f, _view(1.2), res)
    hard = out["hard_mask"][0, ..., 0]
    jj, ii = torch.meshgrid(torch.arange(res), torch.arange(res), indexing="ij")
    x, y = (2 * (ii + 0.5) / res - 1), 1 - 2 * (jj + 0.5) / res  # image x right, y up
    t = math.tan(FOVY / 2)
    ray = torch.nn.functional.normalize(torch.stack([x * t, y * t, -torch.ones_like(x)], -1), dim=-1)
    to_c = torch.nn.functional.normalize(centre - torch.tensor([0.0, 0.0, 1.2]), dim=0)
    angle = torch.acos((ray * to_c).sum(-1).clamp(-1, 1))
    rim = math.asin(0.3 / (centre - torch.tensor([0.0, 0.0, 1.2])).norm())
    sure = (angle - rim).abs() > math.radians(1.5)
    assert torch.equal((hard > 0)[sure], (angle < rim)[sure])
    rows = torch.nonzero(hard > 0)[:, 0].float()
    assert rows.mean() < res / 2 - 1  # the sphere sits above the axis: the top rows
    depth = out["depth"][0, ..., 0][hard > 0]
    assert depth.max() < -0.9 + 0.02 and depth.min() > -1.2 - 0.02  # the front half: camera z in [-1.2, -0.9]
    pos = out["tex_pos"][0][hard > 0]
    assert ((pos - centre).norm(dim=-1) - 0.3).abs().max() < 0.02  # interpolated world points on the sphere
    assert out["mask"].shape == out["hard_mask"].shape and (out["mask"][0, ..., 0][hard > 0] > 0.4).all()


def test_tiny_generator_textured_image_is_masked_and_differentiable():
    torch.manual_seed(0)
    G = GET3DGenerator(TINY)
    g = torch.Generator().manual_seed(1)
    z_geo, z_tex = torch.randn(1, TINY.z_dim, generator=g), torch.randn(1, TINY.z_dim, generator=g)
    meshes, aux = G.generate_meshes(z_geo, z_tex)
    v, f = meshes[0]
    out = render_mesh(v, f, _view(2.5), 16)
    assert out["hard_mask"].sum() > 0
    img = texture_image(G, aux["tex_feature"], aux["ws"], out["tex_pos"], out["hard_mask"])
    assert img.shape == (1, TINY.feat_channel, 16, 16)
    off = out["hard_mask"][0, ..., 0] == 0
    assert (img[0][:, off] == 0).all() and img[0][:, ~off].abs().sum() > 0
    (img.square().sum() + out["mask"].sum()).backward()
    assert sum(p.grad.abs().sum() for p in G.mapping.parameters() if p.grad is not None) > 0
    assert sum(p.grad.abs().sum() for p in G.mapping_geo.parameters() if p.grad is not None) > 0

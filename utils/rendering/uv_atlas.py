"""UV atlases of triangle meshes (xatlas) and their texel maps, for baking a texture field into an image.

`uv_atlas(verts, faces)` charts the mesh with xatlas: vertices are split along the chart seams, so it
returns new vertices (each the copy of an input vertex, `source` gives which), faces over them and a UV
per vertex in [0, 1]^2 (OBJ convention: v = 0 is the image's bottom row). `texel_positions` rasterizes
the atlas in UV space with the shared mesh rasterizer (utils/rendering/mesh_raster.py) and gives, per
texel of a size x size texture, the 3D surface point it shows and whether a chart covers it; a texture
field evaluated there is the mesh's texture. `dilate` spreads the charts' colours a few texels into the
gutters so bilinear lookups at chart edges do not pick up the background.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from utils.errors import UserError
from utils.rendering.mesh_raster import interpolate, rasterize

__all__ = ["UVAtlas", "dilate", "texel_positions", "uv_atlas"]


@dataclass
class UVAtlas:
    """A mesh with its vertices split along chart seams and one UV per vertex."""

    verts: Tensor
    """(V', 3) float32 vertex positions (copies of the input's)."""
    faces: Tensor
    """(F, 3) long faces over `verts`, in the input's order."""
    uvs: Tensor
    """(V', 2) float32 texture coordinates in [0, 1]; v = 0 at the image's bottom (OBJ, trimesh)."""
    source: Tensor
    """(V',) long index of the input vertex each vertex copies."""


def uv_atlas(verts: Tensor, faces: Tensor, padding: int = 2, resolution: int = 0) -> UVAtlas:
    """Chart (V, 3) / (F, 3) with xatlas; `padding` texels between charts at `resolution` (0: xatlas's choice)."""
    if faces.numel() == 0:
        raise UserError("the mesh has no faces: there is nothing to texture (the shape is empty)")
    import xatlas

    v = verts.detach().cpu().numpy().astype(np.float32)
    f = faces.detach().cpu().numpy().astype(np.uint32)
    atlas = xatlas.Atlas()
    atlas.add_mesh(v, f)
    pack = xatlas.PackOptions()
    pack.padding = padding
    pack.resolution = resolution
    atlas.generate(pack_options=pack)
    vmapping, indices, uvs = atlas[0]
    return UVAtlas(torch.from_numpy(v[vmapping]), torch.from_numpy(indices.astype(np.int64)),
                   torch.from_numpy(np.ascontiguousarray(uvs, dtype=np.float32)),
                   torch.from_numpy(vmapping.astype(np.int64)))


def texel_positions(atlas: UVAtlas, size: int) -> tuple[Tensor, Tensor]:
    """(size, size, 3) surface position of each texel (row 0 = the image's top) and its (size, size) coverage."""
    uv = atlas.uvs
    clip = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2, torch.zeros_like(uv[:, 0]), torch.ones_like(uv[:, 0])], -1)
    rast = rasterize(clip.unsqueeze(0), atlas.faces, (size, size))
    pos = interpolate(atlas.verts.unsqueeze(0), rast, atlas.faces)[0]
    return pos, rast[0, ..., 3] > 0


def dilate(image: Tensor, mask: Tensor, iterations: int = 4) -> Tensor:
    """Fill uncovered texels (H, W, C) next to covered ones with their covered neighbours' mean, `iterations` times."""
    img, m = image.clone(), mask.to(image.dtype).clone()
    kernel = torch.ones(1, 1, 3, 3, dtype=image.dtype)
    for _ in range(iterations):
        chan = img.permute(2, 0, 1).unsqueeze(1) * m  # (C, 1, H, W)
        total = torch.nn.functional.conv2d(chan, kernel, padding=1)[:, 0].permute(1, 2, 0)
        count = torch.nn.functional.conv2d(m[None, None], kernel, padding=1)[0, 0]
        grow = (m == 0) & (count > 0)
        img[grow] = (total[grow] / count[grow].unsqueeze(-1))
        m = torch.where(grow, torch.ones_like(m), m)
    return img

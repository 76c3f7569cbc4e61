"""A generated GET3D shape as a textured mesh: a UV atlas of its DMTet mesh (xatlas, utils/rendering/uv_atlas.py)
with the texture field baked into the atlas, and its turntable renders.

GET3D's colours live in [-1, 1] (its real images are scaled so); they are mapped to [0, 1] here. The bake
queries the texture field at the 3D point behind each texel, as nv-tlabs' texture-map export does, and
spreads chart colours into the gutters (utils/rendering/uv_atlas.dilate).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from models.generation_3d.get3d.model import GET3DGenerator
from models.generation_3d.get3d.primitives import camera_from_angles
from models.generation_3d.get3d.render import render_mesh, texture_image
from utils.rendering.uv_atlas import dilate, texel_positions, uv_atlas

__all__ = ["TexturedMesh", "bake_texture", "turntable_frames", "to_unit"]


def to_unit(img: Tensor) -> Tensor:
    """GET3D colours in [-1, 1] -> [0, 1]."""
    return ((img + 1) / 2).clamp(0, 1)


class TexturedMesh(dict):
    """verts (V, 3), faces (F, 3), uvs (V, 2) and texture (T, T, 3) in [0, 1], all CPU tensors."""


@torch.no_grad()
def bake_texture(G: GET3DGenerator, aux: dict, index: int, verts: Tensor, faces: Tensor, size: int) -> TexturedMesh:
    """The UV atlas of mesh `index` of a `generate_meshes` call (its `aux`) with the texture field baked at `size`."""
    atlas = uv_atlas(verts, faces)
    pos, covered = texel_positions(atlas, size)
    dev = aux["tex_feature"].device
    img = texture_image(G, aux["tex_feature"][index:index + 1], aux["ws"][index:index + 1], pos[None].to(dev),
                        covered[None, ..., None].to(dev, pos.dtype))
    tex = to_unit(img[0, :3].permute(1, 2, 0).float().cpu())
    return TexturedMesh(verts=atlas.verts, faces=atlas.faces, uvs=atlas.uvs, texture=dilate(tex, covered))


def turntable_cameras(n: int, elevation_deg: float, start_deg: float = 0.0) -> Tensor:
    """(n, 4, 4) GET3D world-to-camera matrices circling the shape at `elevation_deg` above the horizon."""
    rotation = torch.tensor([math.radians(start_deg) + 2 * math.pi * i / n for i in range(n)])
    polar = torch.full((n,), math.radians(90.0 - elevation_deg))
    return camera_from_angles(rotation, polar)


@torch.no_grad()
def turntable_frames(G: GET3DGenerator, aux: dict, index: int, verts: Tensor, faces: Tensor, n: int, size: int,
                     elevation_deg: float, background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                     chunk: int = 4) -> Tensor:
    """(n, size, size, 3) renders in [0, 1] of mesh `index` (textured by the field) on `background`."""
    mv = turntable_cameras(n, elevation_deg).to(verts)
    bg = torch.tensor(background, dtype=verts.dtype, device=verts.device)
    frames = []
    for i in range(0, n, chunk):
        r = render_mesh(verts, faces, mv[i:i + chunk], size, soft=False)
        k = len(r["hard_mask"])
        feat = aux["tex_feature"][index:index + 1]
        img = texture_image(G, feat.expand(k, *feat.shape[1:]), aux["ws"][index:index + 1].expand(k, -1, -1),
                            r["tex_pos"], r["hard_mask"])
        rgb = to_unit(img[:, :3].permute(0, 2, 3, 1))
        frames.append(rgb * r["hard_mask"] + bg * (1 - r["hard_mask"]))
    return torch.cat(frames).float().cpu()

"""GET3D's image formation: a generated mesh seen by a world-to-camera matrix, rasterized, its surface
points coloured by the texture field.

`projection_matrix()` is GET3D's pinhole (vertical field of view 2 atan(16 / 35), a 35 mm lens on a
32 mm sensor; OpenGL clip space, near 0.1, far 1000, y negated so that raster row 0 is the image's top).
`render_mesh` rasterizes with utils/rendering/mesh_raster.py and returns, per view, the world
position of each covered pixel, the hard mask (1 where a triangle covers the pixel), a soft mask and
the depth. GET3D softens its mask with nvdiffrast's `antialias`; the soft mask here is the PyTorch
rasterizer's SoftRas silhouette instead (both give the silhouette's gradient to the vertices; they
differ by up to one pixel's coverage along edges). `texture_image` queries the texture field at the
covered pixels' positions and, when the texture features have more than 3 channels, maps the feature
image to colours with `synthesis.to_rgb` driven by the last texture w, as GET3D does.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from utils.rendering.mesh_raster import interpolate, rasterize, soft_silhouette

__all__ = ["FOVY", "projection_matrix", "render_mesh", "texture_image"]

FOVY = 2 * math.atan(32 / 2 / 35)
"""GET3D's vertical field of view in radians."""


def projection_matrix(fovy: float = FOVY, near: float = 0.1, far: float = 1000.0) -> Tensor:
    """(4, 4) camera-to-clip matrix (camera looks down -z, OpenGL depth, y flipped for top-down rows)."""
    f = 1.0 / math.tan(fovy / 2)
    return torch.tensor([[f, 0, 0, 0], [0, -f, 0, 0],
                         [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)], [0, 0, -1, 0]],
                        dtype=torch.float32)


def render_mesh(verts: Tensor, faces: Tensor, cam_mv: Tensor, resolution: int, sigma: float = 0.5,
                soft: bool = True) -> dict:
    """Render one mesh (V, 3) / (F, 3) from views `cam_mv` (N, 4, 4) world-to-camera.

    Returns "tex_pos" (N, H, W, 3) world positions, "hard_mask" and "mask" (N, H, W, 1), "depth"
    (N, H, W, 1) camera-space z, and "rast" (N, H, W, 4). With `soft=False` "mask" is the hard mask.
    """
    homo = torch.cat([verts, torch.ones_like(verts[:, :1])], -1)
    cam = torch.einsum("nij,vj->nvi", cam_mv.to(verts), homo)
    clip = cam @ projection_matrix().to(verts).T
    rast = rasterize(clip, faces, (resolution, resolution))
    feats = interpolate(torch.cat([verts.unsqueeze(0).expand(len(cam_mv), -1, -1), cam[..., 2:3]], -1), rast, faces)
    hard = rast[..., 3:].clamp(0, 1)
    mask = soft_silhouette(clip, faces, (resolution, resolution), sigma=sigma).unsqueeze(-1) if soft else hard
    return {"tex_pos": feats[..., :3], "hard_mask": hard, "mask": mask, "depth": feats[..., 3:], "rast": rast}


def texture_image(generator, tex_feature: Tensor, ws: Tensor, tex_pos: Tensor, hard_mask: Tensor) -> Tensor:
    """Colour image (B, img_channels or feat_channel, H, W) of rendered positions (B, H, W, 3).

    `generator` is a GET3DGenerator; `ws` its texture ws (B, num_ws, w_dim); background pixels are 0
    before `to_rgb`.
    """
    gen = generator.synthesis.generator
    b, h, w, _ = tex_pos.shape
    n_tex = gen.tri_plane_synthesis.num_ws_tex
    feat = gen.get_texture_prediction(tex_feature, tex_pos.reshape(b, -1, 3), ws[:, n_tex:])
    feat = feat.reshape(b, h, w, -1) * hard_mask
    img = feat.permute(0, 3, 1, 2)
    if hasattr(generator.synthesis, "to_rgb"):
        img = generator.synthesis.to_rgb(img, ws[:, -1])
    return img

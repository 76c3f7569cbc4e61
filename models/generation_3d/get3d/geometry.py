"""GET3D's geometry step: SDF and deformation at the tetrahedral grid's vertices, then DMTet meshes.

`sdf_and_deformation` decodes the geometry triplanes at the grid vertices, squashes the deformation
to tanh(d) / (grid_res * deformation_multiplier) (at most a fraction of a cell, so tetrahedra do not
flip), and repairs empty shapes the way GET3D does: for a batch entry whose SDF has one sign
everywhere, the vertex nearest the centre is set positive (1 - min sdf) and the grid's boundary
vertices negative (-1 - max sdf), both detached, and `sdf_reg` (B,) = mean |sdf| of that entry pushes
the network away from it (zero for the others). `extract_meshes` runs marching tetrahedra per entry
(utils/rendering/dmtet.py; sdf > 0 inside, faces outward).
"""
from __future__ import annotations

import torch
from torch import Tensor

from models.generation_3d.get3d.layers import TriPlaneTexGeo
from utils.rendering.dmtet import TetGrid, marching_tetrahedra

__all__ = ["center_and_boundary", "extract_meshes", "sdf_and_deformation"]


def center_and_boundary(verts: Tensor) -> tuple[Tensor, Tensor]:
    """Index of the vertex nearest the origin, and of the vertices with a coordinate at the grid's extreme."""
    centre = verts.square().sum(-1).argmin()
    boundary = ((verts == verts.max()) | (verts == verts.min())).any(-1)
    return centre, torch.nonzero(boundary).squeeze(-1)


def sdf_and_deformation(generator: TriPlaneTexGeo, sdf_feature: Tensor, ws_geo: Tensor, grid: TetGrid, grid_res: int,
                        deformation_multiplier: float = 2.0) -> tuple[Tensor, Tensor, Tensor]:
    """(sdf (B, N, 1), deformation (B, N, 3), sdf_reg (B,)) for the MLP part of the geometry ws."""
    b = ws_geo.shape[0]
    sdf, deformation = generator.get_sdf_def_prediction(sdf_feature, grid.verts.unsqueeze(0).expand(b, -1, -1), ws_geo)
    deformation = torch.tanh(deformation) / (grid_res * deformation_multiplier)
    flat = sdf.squeeze(-1)
    empty = ((flat > 0).sum(-1) == 0) | ((flat < 0).sum(-1) == 0)
    sdf_reg = torch.zeros(b, device=sdf.device, dtype=torch.float32)
    if empty.any():
        centre, boundary = center_and_boundary(grid.verts)
        fix = torch.zeros_like(sdf[0])
        fix[centre] += 1.0 - sdf.min()
        fix[boundary] += -1.0 - sdf.max()
        fixed = torch.where(fix != 0, fix, sdf)
        sdf = torch.where(empty.view(b, 1, 1), fixed, sdf)
        sdf_reg = sdf.new_zeros(b) + flat.abs().mean(-1) * empty.float()
        keep = (~empty).view(b, 1, 1).to(sdf.dtype)
        sdf = sdf * keep + sdf.detach() * (1 - keep)
        deformation = deformation * keep + deformation.detach() * (1 - keep)
    return sdf, deformation, sdf_reg


def extract_meshes(grid: TetGrid, sdf: Tensor, deformation: Tensor) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
    """One (verts, faces) per batch entry, and the deformed grid vertices (B, N, 3)."""
    deformed = grid.verts.unsqueeze(0) + deformation
    meshes = [marching_tetrahedra(deformed[i], sdf[i].squeeze(-1), grid.tets) for i in range(sdf.shape[0])]
    return meshes, deformed

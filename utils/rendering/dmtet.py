"""Deformable marching tetrahedra (DMTet): a surface mesh from SDF values on a tetrahedral grid.

A tetrahedral grid is `TetGrid(verts (N, 3), tets (T, 4))`, every tetrahedron positively oriented
(det[v1 - v0, v2 - v0, v3 - v0] > 0). Two sources:

- `regular_tet_grid(resolution)`: project code. The cube [-1/2, 1/2]^3 * scale is cut into
  resolution^3 cells and every cell into six tetrahedra that share its main diagonal (one per order
  in which the path from the cell's low corner to its high corner steps along x, y and z), so that
  neighbouring cells agree on their shared faces and the grid is conforming.
- `load_tet_grid(path)`: the pre-computed grids nv-tlabs ship with GET3D (data/tets/<res>_compress.npz,
  made with Quartet): arrays `vertices` (N, 3) float and `tets` (T, 4) int. They are centred and
  scaled the way GET3D does it (longest side 1, then times `scale`).

`marching_tetrahedra(verts, sdf, tets)` follows GET3D's sign convention: a vertex with sdf > 0 is
inside the shape. Every tetrahedron whose vertices disagree in sign emits one triangle (one vertex on
the other side of the rest) or two (two and two). The mesh's vertices sit on the grid edges whose end
points disagree, at the zero of the linear interpolant of the SDF along the edge:

    p = (s_a p_b - s_b p_a) / (s_a - s_b)

so they are differentiable in both the SDF values and the (deformed) grid vertex positions; the
topology (which edges cross) is not. One mesh vertex per crossing edge, numbered in the
lexicographic order of the edges' (low, high) vertex indices, so that neighbouring tetrahedra share
it and the mesh is closed wherever the grid is. Faces turn counter-clockwise seen from outside.

The triangle table is derived here (`_case_table`) from one reference tetrahedron, not written out:
for each of the 16 inside/outside cases it lists the crossing edges around the cut and orients them
so the normal points from the inside vertices to the outside ones; orientation survives every
positive-determinant affine map, hence every tetrahedron of a positively oriented grid. A two-two
cut is a quadrilateral; it is split along the diagonal joining edges (0,2)-(1,3) when both cross,
else (0,3)-(1,2), which is the split GET3D's table makes, so meshes agree with it face for face.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from utils.errors import UserError

__all__ = [
    "TET_EDGES",
    "TetGrid",
    "load_tet_grid",
    "marching_tetrahedra",
    "regular_tet_grid",
    "sdf_sign_regularizer",
    "tet_edges",
]

TET_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
"""The six edges of a tetrahedron as pairs of its local vertex numbers, in the order the case table uses."""

_DIAGONAL_PREFERENCE = (((0, 2), (1, 3)), ((0, 3), (1, 2)), ((0, 1), (2, 3)))
"""How a two-two quadrilateral cut is split: the first pair of opposite edges that both cross."""


@dataclass
class TetGrid:
    """A tetrahedral grid: vertex positions and positively oriented tetrahedra."""

    verts: Tensor
    """(N, 3) float vertex positions."""
    tets: Tensor
    """(T, 4) long vertex indices per tetrahedron, det[v1 - v0, v2 - v0, v3 - v0] > 0."""

    def to(self, device) -> TetGrid:
        return TetGrid(self.verts.to(device), self.tets.to(device))

    @property
    def edges(self) -> Tensor:
        """(E, 2) the grid's unique edges, low index first, in lexicographic order."""
        return tet_edges(self.tets)


def _orient(verts: Tensor, tets: Tensor) -> Tensor:
    """Swap two vertices of every negatively oriented tetrahedron."""
    p = verts[tets]
    det = torch.linalg.det(torch.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]], -1))
    tets = tets.clone()
    neg = det < 0
    tets[neg, 2], tets[neg, 3] = tets[neg, 3].clone(), tets[neg, 2].clone()
    return tets


def regular_tet_grid(resolution: int, scale: float = 1.0) -> TetGrid:
    """A regular grid of resolution^3 cubes over [-scale/2, scale/2]^3, six tetrahedra per cube."""
    if int(resolution) < 1:
        raise UserError(f"a tetrahedral grid needs a resolution of at least 1, got {resolution}")
    r = int(resolution)
    axis = torch.linspace(-0.5, 0.5, r + 1, dtype=torch.float64) * scale
    verts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    stride = torch.tensor([(r + 1) ** 2, r + 1, 1])
    cells = torch.stack(torch.meshgrid(*(torch.arange(r),) * 3, indexing="ij"), -1).reshape(-1, 3)
    tets = []
    for order in itertools.permutations(range(3)):
        corner = torch.zeros(3, dtype=torch.long)
        path = [corner.clone()]
        for axis_i in order:
            corner[axis_i] = 1
            path.append(corner.clone())
        tets.append(torch.stack([((cells + step) * stride).sum(-1) for step in path], -1))
    tets = torch.cat(tets, 0)
    return TetGrid(verts.float(), _orient(verts, tets))


def load_tet_grid(path: str | Path, scale: float = 1.0) -> TetGrid:
    """Load a GET3D pre-computed grid (.npz with `vertices` and `tets`), centred, longest side `scale`."""
    path = Path(path)
    try:
        data = np.load(path)
        verts, tets = data["vertices"], data["tets"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path} is not a GET3D tetrahedral grid (.npz with arrays 'vertices' and 'tets'): "
                        f"{exc}; pass a file from GET3D's data/tets/ or leave the option out for a regular grid")
    if verts.ndim != 2 or verts.shape[1] != 3 or tets.ndim != 2 or tets.shape[1] != 4:
        raise UserError(f"{path}: 'vertices' must be (N, 3) and 'tets' (T, 4), got {verts.shape} and {tets.shape}")
    if tets.size and (tets.min() < 0 or tets.max() >= len(verts)):
        raise UserError(f"{path}: 'tets' index vertices outside 0..{len(verts) - 1}; the file is damaged")
    v = torch.from_numpy(np.asarray(verts, np.float32))
    lo, hi = v.min(0).values, v.max(0).values
    v = (v - (lo + hi) / 2) / (hi - lo).max() * scale
    t = torch.from_numpy(np.asarray(tets, np.int64))
    return TetGrid(v, _orient(v.double(), t))


def tet_edges(tets: Tensor) -> Tensor:
    """(E, 2) unique edges of tetrahedra (T, 4), low index first, lexicographically sorted."""
    e = tets[:, [a for a, _ in TET_EDGES]], tets[:, [b for _, b in TET_EDGES]]
    pairs = torch.stack([torch.minimum(*e), torch.maximum(*e)], -1).reshape(-1, 2)
    return torch.unique(pairs, dim=0)


@cache
def _case_table() -> tuple[tuple[int, ...], ...]:
    """Per case (bit i set = vertex i inside), the local edge numbers of its triangles, 3 per triangle."""
    corners = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    table = []
    for case in range(16):
        inside = [bool(case >> i & 1) for i in range(4)]
        crossing = [k for k, (a, b) in enumerate(TET_EDGES) if inside[a] != inside[b]]
        if not crossing:
            table.append(())
            continue
        mid = {k: corners[list(TET_EDGES[k])].mean(0) for k in crossing}
        outward = corners[[not x for x in inside]].mean(0) - corners[inside].mean(0)
        if len(crossing) == 3:
            tris = [crossing]
        else:
            d1, d2 = next((TET_EDGES.index(p), TET_EDGES.index(q)) for p, q in _DIAGONAL_PREFERENCE
                          if TET_EDGES.index(p) in crossing and TET_EDGES.index(q) in crossing)
            others = [k for k in crossing if k not in (d1, d2)]
            tris = [[d1, d2, others[0]], [d1, d2, others[1]]]
        out = []
        for tri in tris:
            a, b, c = (mid[k] for k in tri)
            if np.dot(np.cross(b - a, c - a), outward) < 0:
                tri = [tri[0], tri[2], tri[1]]
            out.extend(tri)
        table.append(tuple(out))
    return tuple(table)


def marching_tetrahedra(verts: Tensor, sdf: Tensor, tets: Tensor) -> tuple[Tensor, Tensor]:
    """Extract the sdf = 0 surface of one grid: returns mesh vertices (V, 3) and faces (F, 3) long.

    `verts` (N, 3) the (deformed) grid vertices, `sdf` (N,) with > 0 inside, `tets` (T, 4) positively
    oriented. Differentiable in `verts` and `sdf`. An empty surface gives (0, 3) and (0, 3).
    """
    device = verts.device
    with torch.no_grad():
        inside = sdf > 0
        occ = inside[tets]
        n_in = occ.sum(-1)
        cut = (n_in > 0) & (n_in < 4)
        cut_tets = tets[cut]
        local = torch.tensor(TET_EDGES, device=device)
        ends = cut_tets[:, local]  # (C, 6, 2)
        ends = torch.stack([ends.min(-1).values, ends.max(-1).values], -1).reshape(-1, 2)
        edges, edge_of = torch.unique(ends, dim=0, return_inverse=True)
        crosses = inside[edges[:, 0]] != inside[edges[:, 1]]
        number = torch.full((len(edges),), -1, dtype=torch.long, device=device)
        number[crosses] = torch.arange(int(crosses.sum()), device=device)
        vert_of = number[edge_of].reshape(-1, 6)
        edges = edges[crosses]
        case = (occ[cut].long() * torch.tensor([1, 2, 4, 8], device=device)).sum(-1)
        table = torch.full((16, 6), -1, dtype=torch.long, device=device)
        for k, row in enumerate(_case_table()):
            table[k, :len(row)] = torch.tensor(row, dtype=torch.long)
        picks = table[case]  # (C, 6)
        valid = picks >= 0
        faces = torch.gather(vert_of, 1, picks.clamp(min=0))[valid].reshape(-1, 3)
    s_a, s_b = sdf[edges[:, 0]].unsqueeze(-1), sdf[edges[:, 1]].unsqueeze(-1)
    p_a, p_b = verts[edges[:, 0]], verts[edges[:, 1]]
    mesh_verts = (s_a * p_b - s_b * p_a) / (s_a - s_b)
    return mesh_verts, faces


def sdf_sign_regularizer(sdf: Tensor, edges: Tensor) -> Tensor:
    """GET3D's SDF regulariser: on every grid edge whose ends disagree in sign, a binary cross-entropy
    that pushes each end's SDF (as a logit) towards the other end's side, discouraging stray surfaces.

    `sdf` (N,) or (B, N); `edges` (E, 2). Zero when no edge crosses.
    """
    s = sdf[..., edges]  # (..., E, 2)
    s = s[torch.sign(s[..., 0]) != torch.sign(s[..., 1])]
    if s.numel() == 0:
        return sdf.sum() * 0
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    return bce(s[:, 0], (s[:, 1] > 0).float()) + bce(s[:, 1], (s[:, 0] > 0).float())

"""DMTet: grids (regular and GET3D's .npz), a closed outward mesh of a sphere SDF, gradients, and the
golden fixture made by running nv-tlabs' GET3D marching tetrahedra (tests/fixtures/get3d/make_golden_dmtet.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from utils.errors import UserError
from utils.rendering.dmtet import (
    load_tet_grid,
    marching_tetrahedra,
    regular_tet_grid,
    sdf_sign_regularizer,
    tet_edges,
)

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "get3d" / "golden_dmtet.safetensors"


def _volumes(verts, tets):
    p = verts[tets].double()
    return torch.linalg.det(torch.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]], -1))


def _edge_face_counts(faces):
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    und = torch.stack([e.min(1).values, e.max(1).values], 1)
    _, counts = torch.unique(und, dim=0, return_counts=True)
    _, dcounts = torch.unique(e, dim=0, return_counts=True)
    return counts, dcounts


def test_regular_grid_fills_the_cube_with_positive_conforming_tets():
    g = regular_tet_grid(3, scale=2.0)
    assert g.verts.shape == (64, 3) and g.tets.shape == (6 * 27, 4)
    vol = _volumes(g.verts, g.tets)
    assert (vol > 0).all()
    assert torch.isclose(vol.sum() / 6, torch.tensor(8.0, dtype=torch.float64))  # det = 6 * volume
    assert torch.allclose(g.verts.min(0).values, torch.full((3,), -1.0))
    # conforming: every interior triangle is shared by exactly two tets, boundary ones by one
    tri = torch.cat([g.tets[:, [0, 1, 2]], g.tets[:, [0, 1, 3]], g.tets[:, [0, 2, 3]], g.tets[:, [1, 2, 3]]])
    _, counts = torch.unique(tri.sort(1).values, dim=0, return_counts=True)
    assert set(counts.tolist()) == {1, 2}
    assert (counts == 1).sum() == 6 * 9 * 2  # two triangles per boundary square


def test_load_tet_grid_reads_get3d_npz_centres_scales_and_orients(tmp_path):
    g = regular_tet_grid(2)
    verts = (g.verts.numpy() + 0.5) * np.array([1.0, 1.0, 0.5], np.float32) + 3.0  # off-centre, flat in z
    tets = g.tets.numpy().copy()
    tets[::2, [2, 3]] = tets[::2, [3, 2]]  # half of them negatively oriented
    np.savez_compressed(tmp_path / "8_compress.npz", vertices=verts, tets=tets)
    loaded = load_tet_grid(tmp_path / "8_compress.npz", scale=2.0)
    assert torch.allclose(loaded.verts.max(0).values, torch.tensor([1.0, 1.0, 0.5]))
    assert torch.allclose(loaded.verts.min(0).values, torch.tensor([-1.0, -1.0, -0.5]))
    assert (_volumes(loaded.verts, loaded.tets) > 0).all()
    np.savez(tmp_path / "bad.npz", verts=verts)
    with pytest.raises(UserError, match="'vertices' and 'tets'"):
        load_tet_grid(tmp_path / "bad.npz")


@pytest.mark.parametrize("res", [8, 13])
def test_sphere_gives_a_closed_outward_mesh_on_the_sphere(res):
    g = regular_tet_grid(res, scale=2.0)
    radius = 0.62
    sdf = radius - g.verts.norm(dim=-1)  # > 0 inside
    v, f = marching_tetrahedra(g.verts, sdf, g.tets)
    counts, dcounts = _edge_face_counts(f)
    assert (counts == 2).all()  # watertight: every edge in exactly two faces
    assert (dcounts == 1).all()  # and used once each way: consistent orientation
    assert len(v) - len(counts) + len(f) == 2  # a sphere's Euler characteristic
    n = torch.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=-1)
    assert ((n * v[f].mean(1)).sum(-1) > 0).all()  # outward
    cell = 2.0 / res
    r = v.norm(dim=-1)
    assert (r - radius).abs().max() < cell / 2
    assert abs(r.mean() - radius) < 0.02 * radius
    # enclosed volume (divergence theorem) near the sphere's
    vol = (v[f[:, 0]] * torch.cross(v[f[:, 1]], v[f[:, 2]], dim=-1)).sum() / 6
    assert abs(vol - 4 / 3 * np.pi * radius ** 3) < 0.1 * 4 / 3 * np.pi * radius ** 3


def test_gradients_flow_to_sdf_and_deformation_only_near_the_surface():
    g = regular_tet_grid(6, scale=2.0)
    deform = torch.zeros_like(g.verts, requires_grad=True)
    sdf = (0.55 - g.verts.norm(dim=-1)).requires_grad_(True)
    v, f = marching_tetrahedra(g.verts + deform, sdf, g.tets)
    w = torch.randn(v.shape, generator=torch.Generator().manual_seed(0))
    (v * w).sum().backward(retain_graph=True)
    near = torch.zeros(len(g.verts), dtype=torch.bool)
    e = tet_edges(g.tets)
    crossing = e[(sdf[e[:, 0]] > 0) != (sdf[e[:, 1]] > 0)]
    near[crossing.reshape(-1)] = True
    assert sdf.grad[near].abs().min() > 0 and (sdf.grad[~near] == 0).all()
    assert deform.grad[near].abs().sum(-1).min() > 0 and (deform.grad[~near] == 0).all()
    # raising the SDF (growing the shape) pushes vertices out: d(sum r^2)/d(sdf) > 0 at inside ends
    sdf.grad = None
    (v.norm(dim=-1) ** 2).sum().backward()
    inside_ends = crossing[sdf[crossing].detach() > 0]
    assert (sdf.grad[inside_ends] > 0).all()


def test_empty_and_full_grids_give_no_faces():
    g = regular_tet_grid(2)
    for sdf in (torch.ones(len(g.verts)), -torch.ones(len(g.verts))):
        v, f = marching_tetrahedra(g.verts, sdf, g.tets)
        assert v.shape == (0, 3) and f.shape == (0, 3)


def _canonical(verts, faces):
    """Faces as rows of their vertices' coordinates, each rotated to start at its smallest vertex, sorted."""
    rows = []
    for tri in faces.tolist():
        k = tri.index(min(tri))
        rows.append(tri[k:] + tri[:k])
    return sorted(map(tuple, rows))


def test_matches_get3d_marching_tets_golden():
    gold = load_file(str(GOLDEN))
    verts = gold["in.verts"].clone().requires_grad_(True)
    sdf = gold["in.sdf"].clone().requires_grad_(True)
    v, f = marching_tetrahedra(verts, sdf, gold["in.tets"])
    assert torch.allclose(v, gold["out.verts"], atol=1e-5)
    assert _canonical(v, f) == _canonical(gold["out.verts"], gold["out.faces"])
    (v * gold["in.weights"]).sum().backward()
    assert torch.allclose(sdf.grad, gold["out.grad_sdf"], atol=1e-4)
    assert torch.allclose(verts.grad, gold["out.grad_verts"], atol=1e-5)
    reg = sdf_sign_regularizer(gold["in.sdf"], tet_edges(gold["in.tets"]))
    assert torch.allclose(reg, gold["out.sdf_reg"][0], atol=1e-6)

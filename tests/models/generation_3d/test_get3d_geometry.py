"""GET3D's geometry step (SDF + deformation at the grid vertices, the empty-shape repair, DMTet meshes) against
the golden fixture made by running nv-tlabs' DMTETSynthesisNetwork.get_geometry_prediction on CPU
(tests/fixtures/get3d/make_golden_geometry.py), with the grid passed through GET3D's .npz format."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from models.generation_3d.get3d.geometry import extract_meshes, sdf_and_deformation
from models.generation_3d.get3d.layers import TriPlaneTexGeo
from utils.rendering.dmtet import load_tet_grid

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "get3d" / "golden_geometry.safetensors"


def _canonical(faces):
    rows = []
    for tri in faces.tolist():
        k = tri.index(min(tri))
        rows.append(tuple(tri[k:] + tri[:k]))
    return sorted(rows)


def test_geometry_step_matches_get3d(tmp_path):
    gold = load_file(str(GOLDEN))
    np.savez_compressed(tmp_path / "5_compress.npz", vertices=gold["in.vertices"].numpy(), tets=gold["in.tets"].numpy())
    grid = load_tet_grid(tmp_path / "5_compress.npz", scale=1.8)
    lo, hi = grid.verts.min(), grid.verts.max()
    gen = TriPlaneTexGeo(w_dim=16, img_channels=3, tri_plane_resolution=8, shape_min=float(lo),
                         shape_lenght=float(hi - lo), mlp_latent_channel=16, n_implicit_layer=3,
                         channel_base=128, channel_max=32).eval()
    gen.load_state_dict({k[6:]: v for k, v in gold.items() if k.startswith("state.")}, strict=True)
    n_geo = gen.tri_plane_synthesis.num_ws_geo
    with torch.no_grad():
        sdf, deformation, sdf_reg = sdf_and_deformation(gen, gold["in.sdf_feature"], gold["in.ws_geo"][:, n_geo:],
                                                        grid, grid_res=5)
        meshes, deformed = extract_meshes(grid, sdf, deformation)
    assert torch.allclose(sdf, gold["out.sdf"], atol=1e-4)
    assert torch.allclose(deformation, gold["out.deformation"], atol=1e-6)
    assert torch.allclose(deformed, gold["out.v_deformed"], atol=1e-6)
    assert torch.allclose(sdf_reg, gold["out.sdf_reg"], atol=1e-4)
    assert sdf_reg[0] == 0 and sdf_reg[1] > 0  # the fixture's second entry is the empty-shape repair
    for i, (v, f) in enumerate(meshes):
        assert len(f) > 0
        assert torch.allclose(v, gold[f"out.mesh{i}.verts"], atol=1e-5)
        assert _canonical(f) == _canonical(gold[f"out.mesh{i}.faces"])

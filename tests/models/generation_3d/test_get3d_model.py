"""GET3D generator in nv-tlabs' layout: every key and shape of the released ShapeNet generators (listed by
tests/fixtures/get3d/make_released_keys.py from nv-tlabs' code) on the meta device; the tiny config draws
meshes end to end, and geometry gradients reach the geometry mapping network only."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from models.generation_3d.get3d.config import RELEASED, TINY
from models.generation_3d.get3d.model import GET3DGenerator
from utils.rendering.dmtet import regular_tet_grid

KEYS = Path(__file__).resolve().parents[2] / "fixtures" / "get3d" / "released_keys.json"


def test_released_generator_keys_and_shapes_match_on_meta():
    expected = json.loads(KEYS.read_text())
    grid = regular_tet_grid(1)  # the grid holds no parameters; a tiny one keeps this fast
    for name, cfg in RELEASED.items():
        with torch.device("meta"):
            G = GET3DGenerator(cfg, grid=grid)
        ours = {k: list(v.shape) for k, v in G.state_dict().items()}
        assert ours == expected, name


def test_tiny_generator_draws_meshes_and_geometry_gradients_reach_mapping_geo():
    torch.manual_seed(0)
    G = GET3DGenerator(TINY)
    g = torch.Generator().manual_seed(1)
    z_geo, z_tex = torch.randn(2, TINY.z_dim, generator=g), torch.randn(2, TINY.z_dim, generator=g)
    meshes, aux = G.generate_meshes(z_geo, z_tex)
    assert len(meshes) == 2 and aux["sdf"].shape == (2, len(G.grid.verts), 1)
    half = TINY.dmtet_scale / 2 + 1 / (TINY.tet_res * TINY.deformation_multiplier)
    for v, f in meshes:
        assert len(f) > 0 and int(f.max()) < len(v) and torch.isfinite(v).all() and v.abs().max() <= half + 1e-6
    loss = sum(v.square().sum() for v, _ in meshes) + aux["sdf_reg"].sum()
    loss.backward()
    geo = sum(p.grad.abs().sum() for p in G.mapping_geo.parameters() if p.grad is not None)
    tex = [p.grad for p in G.mapping.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert geo > 0 and not tex

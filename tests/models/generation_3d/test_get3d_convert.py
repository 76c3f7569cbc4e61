"""Official GET3D checkpoint format (torch.save of {'G', 'G_ema', 'D'} state dicts): a tiny one in that format
loads safely, converts to native safetensors that load strictly and draw the same meshes; mistakes are one-line
WeightsErrors."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from models.generation_3d.get3d.config import TINY
from models.generation_3d.get3d.convert import convert, load_official
from models.generation_3d.get3d.discriminator import GET3DDiscriminator
from models.generation_3d.get3d.model import GET3DGenerator
from utils.errors import WeightsError


def test_official_format_round_trips_through_convert(tmp_path):
    torch.manual_seed(0)
    G, G_ema = GET3DGenerator(TINY), GET3DGenerator(TINY)
    D = GET3DDiscriminator(c_dim=0, img_resolution=16, channel_base=128, channel_max=32)
    ckpt = tmp_path / "shapenet_tiny.pt"
    torch.save({"G": G.state_dict(), "G_ema": G_ema.state_dict(), "D": D.state_dict()}, ckpt)
    assert set(load_official(ckpt, "D")) == set(D.state_dict())
    out = convert(ckpt, tmp_path / "tiny.safetensors", TINY)
    native = GET3DGenerator(TINY)
    native.load_state_dict(load_file(str(out)), strict=True)
    z = torch.randn(1, TINY.z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        (v1, f1), = G_ema.generate_meshes(z, z)[0]
        (v2, f2), = native.generate_meshes(z, z)[0]
    assert torch.equal(f1, f2) and torch.equal(v1, v2)


def test_wrong_checkpoints_are_weights_errors(tmp_path):
    bad = tmp_path / "other.pt"
    torch.save({"model": {"w": torch.zeros(1)}}, bad)
    with pytest.raises(WeightsError, match="not an nv-tlabs GET3D checkpoint"):
        load_official(bad)
    with pytest.raises(WeightsError, match="holds G, G_ema, D"):
        load_official(bad, "generator")
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    torch.save({"G_ema": GET3DGenerator(TINY).state_dict()}, ckpt)
    from dataclasses import replace
    with pytest.raises(WeightsError, match="does not fit this GET3D configuration"):
        convert(ckpt, tmp_path / "x.safetensors", replace(TINY, mlp_latent_channel=8))
    assert not (tmp_path / "x.safetensors").exists()

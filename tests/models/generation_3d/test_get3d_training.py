"""One GET3D training step on the built-in primitive renders: finite losses, and both networks' weights move
(the generator's through the rasterizer, DMTet and the texture field)."""
from __future__ import annotations

import pytest
import torch

from models.generation_3d.get3d.config import TINY
from models.generation_3d.get3d.discriminator import GET3DDiscriminator
from models.generation_3d.get3d.model import GET3DGenerator
from models.generation_3d.get3d.primitives import render_primitives
from models.generation_3d.get3d.training import train_step


@pytest.mark.slow  # ~15 s on the loaded 2-core machine (R1's double backward through both branches)
def test_one_step_on_primitives_moves_both_networks():
    torch.manual_seed(0)
    res = 16
    data = render_primitives(2, 1, res, seed=0, grid_res=8)
    real = torch.cat([data["images"][:, 0], data["masks"][:, 0]], 1)
    angles = data["angles"][:, 0]
    G = GET3DGenerator(TINY)
    D = GET3DDiscriminator(c_dim=0, img_resolution=res, img_channels=3, channel_base=128, channel_max=32,
                           num_fp16_res=0, mbstd_group_size=2)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.0, 0.99))
    g_before = {k: v.clone() for k, v in G.state_dict().items()}
    d_before = {k: v.clone() for k, v in D.state_dict().items()}
    out = train_step(G, D, opt_g, opt_d, real, angles, generator=torch.Generator().manual_seed(1))
    assert all(torch.isfinite(torch.tensor(v)) for v in out.values())
    moved = lambda before, net, prefix: any(not torch.equal(before[k], v) for k, v in net.state_dict().items()
                                            if k.startswith(prefix))
    assert moved(d_before, D, "b16") and moved(d_before, D, "mask_b16")
    assert moved(g_before, G, "mapping_geo") and moved(g_before, G, "mapping.")
    assert moved(g_before, G, "synthesis.generator.mlp_synthesis_sdf") and moved(g_before, G, "synthesis.generator.mlp_synthesis_tex")

"""EG3D parity: our triplane generator and dual discriminator against NVlabs' eg3d code.

The fixture (tests/fixtures/eg3d/make_fixture.py) holds a tiny EG3D (StyleGAN2 backbone at 256, 2X
super-resolution, 6 + 6 samples per ray) with seeded random weights, its inputs and EG3D's outputs, made
on the CPU by the official code; here the same weights go through our modules.
"""
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from models.gan.aetherist.config import AetheristConfig
from models.gan.aetherist.model import DualDiscriminator, TriplaneGenerator

FIXTURE = Path(__file__).parents[2] / "fixtures" / "eg3d" / "eg3d_tiny.safetensors"
TINY_EG3D = AetheristConfig(backbone="stylegan2", latent_dim=16, w_dim=512, mapping_layers=2, triplane_resolution=256,
                            channel_base=1024, channel_max=32, image_resolution=128, neural_rendering_resolution=32,
                            sr_module="SuperresolutionHybrid2X", depth_resolution=6, depth_resolution_importance=6)


@pytest.fixture(scope="module")
def eg3d():
    f = load_file(FIXTURE)
    G = TriplaneGenerator(TINY_EG3D).eval()
    G.load_state_dict({k[2:]: v.float() for k, v in f.items() if k.startswith("G.")}, strict=True)
    D = DualDiscriminator(25, 128, channel_base=512, channel_max=128, mbstd_group_size=2).eval()
    D.load_state_dict({k[2:]: v.float() for k, v in f.items() if k.startswith("D.")}, strict=True)
    with torch.no_grad():
        ws = G.mapping(f["in.z"], f["in.c"], truncation_psi=0.7)
        # EG3D drew its ray jitter and importance samples from torch's generator seeded 123, in this order
        out = G.synthesis(ws, f["in.c"], generator=torch.Generator().manual_seed(123))
        logits = D(out, f["in.c"])
        sampled = G.sample_mixed(f["in.coords"], torch.zeros_like(f["in.coords"]), ws)
    return f, ws, out, logits, sampled, G


def test_mapping_and_backbone_match_eg3d(eg3d):
    f, ws, out, _, _, _ = eg3d
    assert (ws - f["out.ws"]).abs().max() <= 1e-4
    assert (out["planes"].reshape(2, 96, 256, 256)[:, :, :8, :8] - f["out.planes_corner"]).abs().max() <= 1e-4


@pytest.mark.parametrize("key", ["image_raw", "image_depth", "image"])
def test_render_and_superresolution_match_eg3d(eg3d, key):
    f, _, out, _, _, _ = eg3d
    ref = f[f"out.{key}"]
    assert ref.std() > 1e-3  # a render with structure, not a constant
    assert (out[key] - ref).abs().max() <= 1e-4


def test_discriminator_logits_and_density_match_eg3d(eg3d):
    f, _, _, logits, sampled, _ = eg3d
    assert (logits - f["out.logits"]).abs().max() <= 1e-4
    assert (sampled["sigma"] - f["out.sigma"]).abs().max() <= 1e-4
    assert (sampled["rgb"] - f["out.rgb"]).abs().max() <= 1e-4


def test_another_render_seed_changes_the_raw_image(eg3d):
    f, ws, out, _, _, G = eg3d
    with torch.no_grad():
        other = G.synthesis(ws, f["in.c"], generator=torch.Generator().manual_seed(7), planes=out["planes"])
    assert (other["image_raw"] - f["out.image_raw"]).abs().max() > 1e-4

"""LTX-Video transformer (the luma package): parity with diffusers' LTXVideoTransformer3DModel through our
converter at two tiny configs, and full-size official key/shape coverage of the 2B release on meta."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from diffusers import LTXVideoTransformer3DModel

from models.video_generation.luma_dream.config import TRANSFORMER_PRESETS, LTXTransformerConfig, transformer_preset
from models.video_generation.luma_dream.convert import (diffusers_to_official, infer_config, official_to_diffusers,
                                                  split_single_file, to_native)
from models.video_generation.luma_dream.model import LTXVideoTransformer, latent_coords
from utils.errors import ConversionError, UserError
from utils.weights import load_into

FIXTURE = Path(__file__).parents[2] / "fixtures" / "ltx_video" / "official_keys.json.gz"
TINY = TRANSFORMER_PRESETS["tiny"]  # width 32: 32 % 6 = 2 unrotated channels
# Width 36 (36 % 6 = 0: every channel rotated), three blocks, 3 heads, cross width = token width.
TINY_B = LTXTransformerConfig(in_channels=6, out_channels=5, num_attention_heads=3, attention_head_dim=12,
                              num_layers=3, cross_attention_dim=36, caption_channels=20)


def _pair(cfg: LTXTransformerConfig, seed: int = 0):
    ref = LTXVideoTransformer3DModel(**cfg.to_diffusers()).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    ours = LTXVideoTransformer(cfg).eval()
    ours.load_state_dict(diffusers_to_official(ref.state_dict()), strict=True)
    return ours, ref


def _inputs(cfg, b=2, f=3, h=4, w=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, f * h * w, cfg.in_channels, generator=g)
    ctx = torch.randn(b, 7, cfg.caption_channels, generator=g)
    mask = torch.ones(b, 7)
    mask[1, 4:] = 0
    return x, ctx, mask


@pytest.mark.parametrize("cfg", [TINY, TINY_B], ids=["tiny", "tiny-b"])
def test_parity_with_diffusers(cfg):
    ours, ref = _pair(cfg)
    x, ctx, mask = _inputs(cfg)
    t = torch.tensor([999.0, 37.5])
    scale = (8 / 25, 32.0, 32.0)
    with torch.no_grad():
        want = ref(x, ctx, t, mask, num_frames=3, height=4, width=5, rope_interpolation_scale=scale,
                   return_dict=False)[0]
        got = ours(x, ctx, t, latent_coords(2, 3, 4, 5, scale), mask)
    assert got.shape == (2, 60, cfg.out_channels)
    assert (got - want).abs().max().item() <= 1e-4
    assert want.abs().mean() > 1e-2


def test_positions_and_mask_matter():
    # The parity above would hold for a model that ignored positions or the mask; this one would not.
    ours, _ = _pair(TINY)
    x, ctx, mask = _inputs(TINY)
    t = torch.tensor([500.0, 500.0])
    with torch.no_grad():
        base = ours(x, ctx, t, latent_coords(2, 3, 4, 5, (0.32, 32, 32)), mask)
        moved = ours(x, ctx, t, latent_coords(2, 3, 4, 5, (0.32, 64, 64)), mask)
        unmasked = ours(x, ctx, t, latent_coords(2, 3, 4, 5, (0.32, 32, 32)), torch.ones_like(mask))
    assert (base - moved).abs().max() > 1e-3
    assert (base[0] - unmasked[0]).abs().max() < 1e-6  # sample 0 had no padding
    assert (base[1] - unmasked[1]).abs().max() > 1e-3


def test_per_token_timesteps_parity_with_diffusers():
    # Image-to-video: the first frame's tokens carry t = 0, the rest the sampler's t.
    ours, ref = _pair(TINY, seed=3)
    x, ctx, mask = _inputs(TINY)
    t = torch.full((2, 60), 700.0)
    t[:, :20] = 0.0
    scale = (8 / 25, 32.0, 32.0)
    with torch.no_grad():
        want = ref(x, ctx, t, mask, num_frames=3, height=4, width=5, rope_interpolation_scale=scale,
                   return_dict=False)[0]
        got = ours(x, ctx, t, latent_coords(2, 3, 4, 5, scale), mask)
    assert (got - want).abs().max().item() <= 1e-4


def test_layouts_round_trip_and_single_file():
    ours, ref = _pair(TINY_B)
    native = ours.state_dict()
    assert set(official_to_diffusers(native)) == set(ref.state_dict())
    single = {"model.diffusion_model." + k: v for k, v in native.items()}
    single["vae.decoder.conv_in.conv.weight"] = torch.zeros(1)
    transformer, vae = split_single_file(single)
    assert set(transformer) == set(native) and set(vae) == {"decoder.conv_in.conv.weight"}
    assert set(to_native(single)) == set(native)
    assert set(to_native(ref.state_dict())) == set(native)
    cfg = infer_config(native, heads=3)
    assert cfg == TINY_B


def test_infer_config_refuses_other_tensors():
    with pytest.raises(ConversionError, match="not an LTX-Video transformer"):
        infer_config({"foo.weight": torch.zeros(2)})


def test_bad_tokens_are_one_line():
    ours = LTXVideoTransformer(TINY)
    with pytest.raises(UserError, match="pack the latents"):
        ours(torch.zeros(1, 8, 3, 4, 5), torch.zeros(1, 2, 16), torch.zeros(1), torch.zeros(1, 3, 60))


def test_official_2b_keys_on_meta():
    official = json.load(gzip.open(FIXTURE, "rt"))["transformer_2b"]
    with torch.device("meta"):
        model = LTXVideoTransformer(transformer_preset("ltxv-2b"))
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == official  # names and shapes, nothing missing or left over
    single = {"model.diffusion_model." + k: torch.empty(s, device="meta") for k, s in official.items()}
    native = to_native(single)
    assert infer_config(native) == transformer_preset("ltxv-2b")
    load_into(model, native, what="LTX-Video 2B")
    # The diffusers layout of the same release converts back with nothing left over.
    with torch.device("meta"):
        ref = LTXVideoTransformer3DModel(**transformer_preset("ltxv-2b").to_diffusers())
    assert {k: list(v.shape) for k, v in official_to_diffusers(native).items()} == \
        {k: list(v.shape) for k, v in ref.state_dict().items()}

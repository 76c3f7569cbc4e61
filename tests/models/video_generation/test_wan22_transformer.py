"""The Wan 2.2 TI2V-5B transformer (the sora package): per-token timesteps (a (B, tokens) timestep, as
diffusers' expand_timesteps gives it) in parity with diffusers' WanTransformer3DModel at two tiny
configs, and full-size key/shape coverage of the 5B on the meta device in the official layout (the list
the Wan team's WanModel builds, tests/fixtures/wan22) and the diffusers layout.

Where the 5B sizes come from:
- dim 3072, ffn_dim 14336, freq_dim 256, 24 heads, 30 layers, patch (1, 2, 2), eps 1e-6: the release's
  wan/configs/wan_ti2v_5B.py (Wan-Video/Wan2.2 at 42bf4cf);
- text_dim 4096: WanModel's default there (UMT5-XXL's width), and every published diffusers config;
- in/out 48 channels: the Wan 2.2 VAE's z_dim (textimage2video.py feeds the noise of z_dim channels to the
  model as is), as the diffusers configs of the 5B published on the hub say (in_channels 48, out_channels
  48, num_attention_heads 24, attention_head_dim 128, ffn_dim 14336, num_layers 30, text_dim 4096,
  freq_dim 256: Wan2.2-TI2V-5B-Diffusers transformer/config.json as mirrored at inference-sh/, and the
  5B fine-tune linyq/kiwi-edit-5b-instruct-reference-diffusers).
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from diffusers import WanTransformer3DModel

from models.video_generation.sora.config import TRANSFORMER_PRESETS, WanTransformerConfig, transformer_config
from models.video_generation.sora.convert import diffusers_to_official, infer_config, official_to_diffusers
from models.video_generation.sora.model import WanTransformer

FIXTURES = Path(__file__).parents[2] / "fixtures" / "wan22"
TI2V = transformer_config("tiny-ti2v")
# Odd sizes: head dim 20 splits (8, 6, 6) over (frame, row, col), three blocks, no cross-attention norm.
TI2V_B = WanTransformerConfig(in_dim=8, out_dim=8, dim=40, ffn_dim=56, freq_dim=16, text_dim=12, num_heads=2,
                              num_layers=3, cross_attn_norm=False, eps=1e-5)
FIVE_B = dict(num_attention_heads=24, attention_head_dim=128, in_channels=48, out_channels=48, text_dim=4096,
              freq_dim=256, ffn_dim=14336, num_layers=30, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
              eps=1e-6, image_dim=None, added_kv_proj_dim=None, patch_size=(1, 2, 2), rope_max_seq_len=1024)


def _pair(cfg: WanTransformerConfig, seed: int = 0) -> tuple[WanTransformer, WanTransformer3DModel]:
    ref = WanTransformer3DModel(**cfg.to_diffusers()).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    ours = WanTransformer(cfg).eval()
    ours.load_state_dict(diffusers_to_official(ref.state_dict()), strict=True)
    return ours, ref


@pytest.mark.parametrize("cfg", [TI2V, TI2V_B], ids=["tiny-ti2v", "odd"])
def test_per_token_timesteps_parity_with_diffusers(cfg):
    ours, ref = _pair(cfg, seed=1)
    g = torch.Generator().manual_seed(2)
    frames, h, w = 3, 4, 6
    tokens = frames * (h // 2) * (w // 2)
    x = torch.randn(2, cfg.in_dim, frames, h, w, generator=g)
    ctx = torch.randn(2, 7, cfg.text_dim, generator=g)
    # TI2V's pattern: the given first latent frame's tokens at 0, the rest at each sample's t ...
    first = torch.tensor([[0.0] * (tokens // frames) + [t] * (tokens - tokens // frames) for t in (900.0, 120.5)])
    # ... and any per-token timesteps at all.
    free = torch.rand(2, tokens, generator=g) * 1000
    with torch.no_grad():
        for t in (first, free):
            want = ref(x, t, ctx, return_dict=False)[0]
            got = ours(x, t, ctx)
            assert got.shape == want.shape == (2, cfg.out_dim, frames, h, w)
            assert (got - want).abs().max().item() <= 1e-4
            assert want.abs().mean() > 1e-2
        # A (B,) timestep is the same as every token having it.
        uniform = torch.tensor([900.0, 120.5])
        assert (ours(x, uniform, ctx) - ours(x, uniform[:, None].expand(2, tokens), ctx)).abs().max() <= 1e-5
        assert (ours(x, first, ctx) - ours(x, uniform, ctx)).abs().max() > 1e-3  # the zeros reach the output


def test_full_size_5b_keys_on_meta():
    official = json.loads(gzip.open(FIXTURES / "official_keys.json.gz", "rt").read())["wan2.2-ti2v-5b"]
    official = {k: tuple(v) for k, v in official.items()}
    assert len(official) == 825
    preset = TRANSFORMER_PRESETS["wan2.2-ti2v-5b"]
    assert (preset.dim, preset.num_layers, preset.num_heads, preset.ffn_dim, preset.in_dim, preset.out_dim,
            preset.text_dim, preset.freq_dim, preset.head_dim) == (3072, 30, 24, 14336, 48, 48, 4096, 256, 128)
    with torch.device("meta"):
        ours = WanTransformer(preset)
        ref = WanTransformer3DModel(**FIVE_B)
    native = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert native == official  # the release's names and shapes, nothing missing or left over
    diffusers = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in diffusers_to_official(ref.state_dict()).items()} == official
    meta = {k: torch.empty(v, device="meta") for k, v in official.items()}
    assert {k: tuple(v.shape) for k, v in official_to_diffusers(meta).items()} == diffusers
    assert WanTransformerConfig.from_diffusers(FIVE_B) == preset
    assert infer_config(meta) == preset  # 128 channels per head, as every release
    assert sum(v.numel() for v in ours.parameters()) / 1e9 == pytest.approx(5.0, abs=0.1)

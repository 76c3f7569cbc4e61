"""Wan transformer (the sora package): parity with diffusers' WanTransformer3DModel through our
converter, and full-size official key/shape coverage on the meta device."""
from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel

from models.video_generation.sora.config import TRANSFORMER_PRESETS, WanTransformerConfig, transformer_config
from models.video_generation.sora.convert import (diffusers_to_official, infer_config, official_to_diffusers,
                                                  to_native)
from models.video_generation.sora.model import WanTransformer
from utils.errors import ConversionError, UserError

T2V = WanTransformerConfig(dim=48, ffn_dim=64, freq_dim=32, text_dim=24, num_heads=2, num_layers=2)
# Odd sizes on purpose: head dim 20 splits (8, 6, 6) over (frame, row, col); no cross-attention norm.
T2V_B = WanTransformerConfig(in_dim=8, out_dim=4, dim=40, ffn_dim=56, freq_dim=16, text_dim=12, num_heads=2,
                             num_layers=3, cross_attn_norm=False, eps=1e-5)
I2V = WanTransformerConfig(in_dim=12, dim=48, ffn_dim=64, freq_dim=32, text_dim=24, num_heads=2, num_layers=2,
                           image_dim=20)
FLF2V = WanTransformerConfig(in_dim=12, dim=48, ffn_dim=64, freq_dim=32, text_dim=24, num_heads=2, num_layers=1,
                             image_dim=20, image_pos_len=6)


def _randomize(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def _pair(cfg: WanTransformerConfig, seed: int = 0) -> tuple[WanTransformer, WanTransformer3DModel]:
    ref = WanTransformer3DModel(**cfg.to_diffusers()).eval()
    _randomize(ref, seed)
    ours = WanTransformer(cfg).eval()
    ours.load_state_dict(diffusers_to_official(ref.state_dict()), strict=True)
    return ours, ref


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("cfg", [T2V, T2V_B], ids=["t2v", "t2v-odd"])
def test_t2v_parity_with_diffusers(cfg):
    ours, ref = _pair(cfg)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, cfg.in_dim, 3, 6, 4, generator=g)
    t = torch.tensor([999.0, 37.5])
    ctx = torch.randn(2, 7, cfg.text_dim, generator=g)
    with torch.no_grad():
        want = ref(x, t, ctx, return_dict=False)[0]
        got = ours(x, t, ctx)
    assert got.shape == (2, cfg.out_dim, 3, 6, 4)
    assert _max_diff(got, want) <= 1e-4
    assert want.abs().mean() > 1e-2  # a real signal, not zeros on both sides


def test_per_token_timesteps_parity_with_diffusers():
    # Wan 2.2 5B style: each token its own timestep (conditioning frames at t = 0).
    ours, ref = _pair(T2V, seed=3)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, T2V.in_dim, 2, 4, 4, generator=g)
    t = torch.cat([torch.zeros(1, 4), torch.full((1, 4), 500.0)], dim=1)  # (B, F*H/2*W/2)
    ctx = torch.randn(1, 5, T2V.text_dim, generator=g)
    with torch.no_grad():
        want = ref(x, t, ctx, return_dict=False)[0]
        got = ours(x, t, ctx)
        uniform = ours(x, torch.full((1,), 500.0), ctx)
    assert _max_diff(got, want) <= 1e-4
    assert _max_diff(got, uniform) > 1e-3  # the per-token timesteps reach the output


@pytest.mark.parametrize("cfg", [I2V, FLF2V], ids=["i2v", "flf2v"])
def test_i2v_parity_with_diffusers(cfg):
    ours, ref = _pair(cfg, seed=4)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, cfg.in_dim - 8, 2, 4, 6, generator=g)
    cond = torch.randn(1, 8, 2, 4, 6, generator=g)
    ctx = torch.randn(1, 512, cfg.text_dim, generator=g)  # diffusers splits image tokens off at len - 512
    # First-last-frame: the two images' CLIP tokens arrive stacked on the batch axis, half the table each.
    rows, n_img = (2, cfg.image_pos_len // 2) if cfg.image_pos_len else (1, 5)
    clip = torch.randn(rows, n_img, cfg.image_dim, generator=g)
    t = torch.tensor([250.0])
    with torch.no_grad():
        want = ref(torch.cat([x, cond], 1), t, ctx, encoder_hidden_states_image=clip, return_dict=False)[0]
        got = ours(x, t, ctx, clip_fea=clip, y=cond)
        other = ours(x, t, ctx, clip_fea=torch.randn(rows, n_img, cfg.image_dim, generator=g), y=cond)
    assert _max_diff(got, want) <= 1e-4
    assert _max_diff(got, other) > 1e-3  # the image tokens matter
    with pytest.raises(UserError, match="clip_fea"):
        ours(x, t, ctx, y=cond)


def test_round_trip_and_single_file_prefix():
    ours, ref = _pair(I2V)
    native = ours.state_dict()
    back = official_to_diffusers(native)
    assert set(back) == set(ref.state_dict())
    assert all(torch.equal(back[k], v) for k, v in ref.state_dict().items())
    repacked = {"model.diffusion_model." + k: v for k, v in native.items()}
    assert set(to_native(repacked)) == set(native)
    assert infer_config(native, head_dim=I2V.head_dim) == I2V
    with pytest.raises(ConversionError, match="blocks.0.attn1.to_qkv.weight"):
        diffusers_to_official({**ref.state_dict(), "blocks.0.attn1.to_qkv.weight": torch.zeros(1)})


def test_bad_latent_sizes_are_user_errors():
    model = WanTransformer(T2V)
    ctx = torch.zeros(1, 3, T2V.text_dim)
    with pytest.raises(UserError, match="multiple of the patch"):
        model(torch.zeros(1, 16, 2, 5, 4), torch.tensor([1.0]), ctx)
    with pytest.raises(UserError, match="channels"):
        model(torch.zeros(1, 4, 2, 4, 4), torch.tensor([1.0]), ctx)
    with pytest.raises(UserError, match="unknown Wan transformer preset"):
        transformer_config("wan2.1-t2v-13b")


# Published diffusers configs (Wan-AI/Wan2.1-*-Diffusers, Wan2.2-TI2V-5B-Diffusers transformer/config.json).
DIFFUSERS_CONFIGS = {
    "wan2.1-t2v-1.3b": dict(num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                            text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                            qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None,
                            patch_size=(1, 2, 2), rope_max_seq_len=1024),
    "wan2.1-t2v-14b": dict(num_attention_heads=40, attention_head_dim=128, in_channels=16, out_channels=16,
                           text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
                           qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None,
                           patch_size=(1, 2, 2), rope_max_seq_len=1024),
    "wan2.1-i2v-14b-480p": dict(num_attention_heads=40, attention_head_dim=128, in_channels=36, out_channels=16,
                                text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40, cross_attn_norm=True,
                                qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280, added_kv_proj_dim=5120,
                                patch_size=(1, 2, 2), rope_max_seq_len=1024),
    "wan2.2-ti2v-5b": dict(num_attention_heads=24, attention_head_dim=128, in_channels=48, out_channels=48,
                           text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30, cross_attn_norm=True,
                           qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None,
                           patch_size=(1, 2, 2), rope_max_seq_len=1024),
}

# Tensors of the official Wan 2.1 / 2.2 releases (names and shapes as published).
OFFICIAL_SHAPES = {
    "wan2.1-t2v-1.3b": {"patch_embedding.weight": (1536, 16, 1, 2, 2), "text_embedding.0.weight": (1536, 4096),
                        "time_projection.1.weight": (9216, 1536), "blocks.29.self_attn.q.weight": (1536, 1536),
                        "blocks.0.self_attn.norm_q.weight": (1536,), "blocks.0.norm3.weight": (1536,),
                        "blocks.0.ffn.0.weight": (8960, 1536), "blocks.0.modulation": (1, 6, 1536),
                        "head.head.weight": (64, 1536), "head.modulation": (1, 2, 1536)},
    "wan2.1-t2v-14b": {"patch_embedding.weight": (5120, 16, 1, 2, 2), "blocks.39.cross_attn.o.weight": (5120, 5120),
                       "blocks.0.ffn.2.weight": (5120, 13824), "time_embedding.0.weight": (5120, 256)},
    "wan2.1-i2v-14b-480p": {"patch_embedding.weight": (5120, 36, 1, 2, 2), "img_emb.proj.1.weight": (1280, 1280),
                            "img_emb.proj.3.weight": (5120, 1280), "img_emb.proj.4.weight": (5120,),
                            "blocks.0.cross_attn.k_img.weight": (5120, 5120),
                            "blocks.0.cross_attn.norm_k_img.weight": (5120,)},
    "wan2.2-ti2v-5b": {"patch_embedding.weight": (3072, 48, 1, 2, 2), "head.head.weight": (192, 3072),
                       "blocks.29.ffn.0.weight": (14336, 3072)},
}


@pytest.mark.parametrize("preset", sorted(DIFFUSERS_CONFIGS))
def test_full_size_official_layout_on_meta(preset):
    with torch.device("meta"):
        ref = WanTransformer3DModel(**DIFFUSERS_CONFIGS[preset])
        ours = WanTransformer(TRANSFORMER_PRESETS[preset])
    assert WanTransformerConfig.from_diffusers(DIFFUSERS_CONFIGS[preset]) == TRANSFORMER_PRESETS[preset]
    mapped = {k: tuple(v.shape) for k, v in diffusers_to_official(ref.state_dict()).items()}
    native = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert mapped == native
    assert len(native) == len(ref.state_dict())
    for key, shape in OFFICIAL_SHAPES[preset].items():
        assert native[key] == shape, key
    assert infer_config(ours.state_dict()) == TRANSFORMER_PRESETS[preset]

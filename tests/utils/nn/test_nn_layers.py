"""utils.nn against the references: diffusers' embeddings, RoPE, torch's RMSNorm, SDPA."""
from __future__ import annotations

import math
import threading

import pytest
import torch

from utils.errors import UserError
from utils.nn import (RMSNorm, RotaryEmbedding, apply_rope, attention,
                      attention_backend, gate, get_attention_backend, grid_ids, modulate, resolve_attention_backend,
                      rms_norm, rope_1d, set_attention_backend, timestep_embedding)

TOL = 1e-5


def qkv(b=2, h=3, lq=17, lk=19, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, lq, d, generator=g), torch.randn(b, h, lk, d, generator=g),
            torch.randn(b, h, lk, d, generator=g))


# -- attention --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mask_kind", [None, "bool4d", "float4d", "padding2d", "bool3d"])
@pytest.mark.parametrize("scale", [None, 0.3])
def test_math_matches_sdpa(mask_kind, scale):
    q, k, v = qkv()
    g = torch.Generator().manual_seed(1)
    mask = None
    if mask_kind == "bool4d":
        mask = torch.rand(2, 1, 17, 19, generator=g) > 0.3
        mask[..., 0] = True  # no fully masked rows
    elif mask_kind == "float4d":
        mask = torch.randn(2, 3, 17, 19, generator=g)
    elif mask_kind == "padding2d":
        mask = torch.ones(2, 19, dtype=torch.bool)
        mask[1, 11:] = False
    elif mask_kind == "bool3d":
        mask = torch.rand(2, 17, 19, generator=g) > 0.5
        mask[..., 0] = True
    a = attention(q, k, v, mask, scale, backend="math")
    b = attention(q, k, v, mask, scale, backend="sdpa")
    assert a.shape == (2, 3, 17, 16)
    assert (a - b).abs().max() <= TOL


def test_padding_mask_ignores_padded_keys():
    q, k, v = qkv(b=1)
    mask = torch.ones(1, 19, dtype=torch.bool)
    mask[0, 10:] = False
    full = attention(q, k, v, mask)
    cut = attention(q, k[:, :, :10], v[:, :, :10])
    assert (full - cut).abs().max() <= TOL


def test_math_matches_explicit_formula():
    q, k, v = qkv(b=1, h=1)
    ref = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(16), -1) @ v
    with attention_backend("math"):
        assert (attention(q, k, v) - ref).abs().max() <= TOL


def test_dispatcher_picks_sdpa_on_cpu():
    q, k, v = qkv()
    assert resolve_attention_backend(q, k, v) == "sdpa"
    assert resolve_attention_backend(q.half(), k.half(), v.half()) == "sdpa"
    with attention_backend("math"):
        assert resolve_attention_backend(q) == "math"
        with attention_backend("auto"):
            assert resolve_attention_backend(q) == "sdpa"
        assert get_attention_backend() == "math"
    assert get_attention_backend() == "auto"


@pytest.mark.parametrize("name", ["xformers", "flash"])
def test_unavailable_backend_is_a_user_error(name):
    q, k, v = qkv()
    # On CPU neither can serve the call, installed or not.
    with pytest.raises(UserError, match=name):
        with attention_backend(name):
            attention(q, k, v)
    with pytest.raises(UserError, match="CUDA|not installed"):
        resolve_attention_backend(q, backend=name)


def test_unknown_backend_lists_names():
    with pytest.raises(UserError, match="sdpa"):
        attention_backend("sdpaa").__enter__()
    with pytest.raises(UserError):
        set_attention_backend("nope")


def test_global_setting_and_env(monkeypatch):
    q, _, _ = qkv()
    try:
        set_attention_backend("math")
        assert resolve_attention_backend(q) == "math"
    finally:
        set_attention_backend(None)
    monkeypatch.setenv("CVGEN_ATTENTION_BACKEND", "math")
    assert resolve_attention_backend(q) == "math"


def test_context_is_per_thread():
    seen = {}

    def worker():
        seen["thread"] = get_attention_backend()

    with attention_backend("math"):
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert get_attention_backend() == "math"
    assert seen["thread"] == "auto"


# -- timestep embeddings ----------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [32, 33, 256, 320])
@pytest.mark.parametrize("flip,shift,scale,max_period", [(False, 1, 1, 10000), (True, 0, 1, 10000),
                                                         (True, 1, 2.5, 10000), (False, 0, 1, 1000)])
def test_timestep_embedding_vs_diffusers(dim, flip, shift, scale, max_period):
    from diffusers.models.embeddings import get_timestep_embedding

    t = torch.tensor([0.0, 1.0, 17.5, 999.0, 500.25])
    ref = get_timestep_embedding(t, dim, flip, shift, scale, max_period)
    ours = timestep_embedding(t, dim, flip, shift, scale, max_period)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() <= TOL


def _official_flux_timestep_embedding(t, dim, max_period=10000, time_factor=1000.0):
    # The FLUX release's formula, restated: t*1000, cos first, frequencies over `half`.
    t = time_factor * t
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def test_timestep_embedding_flux():
    from diffusers.models.embeddings import Timesteps as DTimesteps

    t = torch.tensor([0.0, 0.013, 0.5, 0.93, 1.0])
    ours = timestep_embedding(t, 256, flip_sin_to_cos=True, downscale_freq_shift=0, time_factor=1000.0)
    assert (ours - _official_flux_timestep_embedding(t, 256)).abs().max() <= TOL
    # diffusers' FLUX transformer multiplies by 1000 itself, then embeds.
    ref = DTimesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)(t * 1000)
    assert (ours - ref).abs().max() <= TOL


# -- rotary embeddings ------------------------------------------------------------------------------

def _flux_ids(h, w, n_txt):
    return torch.cat([torch.zeros(n_txt, 3), grid_ids(h, w)], dim=0)


def test_rope_tables_vs_diffusers_flux():
    from diffusers.models.transformers.transformer_flux import FluxPosEmbed

    ids = _flux_ids(6, 5, 7)
    ref_cos, ref_sin = FluxPosEmbed(10000, [16, 56, 56])(ids)
    cos, sin = RotaryEmbedding((16, 56, 56), 10000)(ids)
    assert cos.shape == ref_cos.shape == (37, 128)
    assert (cos - ref_cos).abs().max() <= TOL and (sin - ref_sin).abs().max() <= TOL


def test_apply_rope_vs_diffusers():
    from diffusers.models.embeddings import apply_rotary_emb
    from diffusers.models.transformers.transformer_flux import FluxPosEmbed

    ids = _flux_ids(4, 4, 3)
    axes = [8, 12, 12]
    freqs = FluxPosEmbed(10000, axes)(ids)
    q, k, _ = qkv(b=2, h=3, lq=19, lk=19, d=32)
    cos, sin = RotaryEmbedding(axes)(ids)
    for x in (q, k):
        ref = apply_rotary_emb(x, freqs, use_real=True, use_real_unbind_dim=-1)
        assert (apply_rope(x, cos, sin) - ref).abs().max() <= TOL
    # the half-split layout
    from diffusers.models.embeddings import get_1d_rotary_pos_embed
    pos = torch.arange(19).float()
    ref_freqs = get_1d_rotary_pos_embed(32, pos, use_real=True, repeat_interleave_real=False)
    c2, s2 = rope_1d(pos, 32, interleaved=False)
    ref = apply_rotary_emb(q, ref_freqs, use_real=True, use_real_unbind_dim=-2)
    assert (apply_rope(q, c2, s2, interleaved=False) - ref).abs().max() <= TOL


def _official_flux_rope(pos, dim, theta):
    # The FLUX release's 2x2 rotation matrices, restated, applied as in its apply_rope.
    scale = torch.arange(0, dim, 2, dtype=torch.float64) / dim
    omega = 1.0 / theta ** scale
    out = torch.einsum("...n,d->...nd", pos.double(), omega)
    out = torch.stack([torch.cos(out), -torch.sin(out), torch.sin(out), torch.cos(out)], dim=-1)
    return out.reshape(*out.shape[:-1], 2, 2).float()


def test_apply_rope_vs_official_flux_form():
    ids = _flux_ids(3, 4, 2)[None]  # (1, L, 3) as the release keeps a batch dim
    axes = (8, 12, 12)
    pe = torch.cat([_official_flux_rope(ids[..., i], d, 10000) for i, d in enumerate(axes)], dim=-3)[:, None]
    q, _, _ = qkv(b=1, h=2, lq=14, lk=14, d=32)
    xq = q.float().reshape(*q.shape[:-1], -1, 1, 2)
    ref = (pe[..., 0] * xq[..., 0] + pe[..., 1] * xq[..., 1]).reshape(*q.shape)
    cos, sin = RotaryEmbedding(axes)(ids)  # batched ids -> (1, L, D) tables
    assert (apply_rope(q, cos, sin) - ref).abs().max() <= TOL


def test_rope_preserves_norm_and_relative_positions():
    q, k, _ = qkv(b=1, h=1, lq=8, lk=8, d=16)
    cos, sin = rope_1d(torch.arange(8).float(), 16)
    rq = apply_rope(q, cos, sin)
    assert torch.allclose(rq.norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    # shifting every position by the same offset leaves q·k unchanged
    c2, s2 = rope_1d(torch.arange(8).float() + 5, 16)
    a = apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).transpose(-1, -2)
    b = apply_rope(q, c2, s2) @ apply_rope(k, c2, s2).transpose(-1, -2)
    assert (a - b).abs().max() <= 1e-4


# -- norms and modulation ---------------------------------------------------------------------------

def test_rmsnorm_vs_torch():
    x = torch.randn(2, 5, 64)
    ours = RMSNorm(64, eps=1e-6)
    with torch.no_grad():
        ours.weight.normal_()
    ref = torch.nn.RMSNorm(64, eps=1e-6)
    ref.load_state_dict(ours.state_dict())
    assert (ours(x) - ref(x)).abs().max() <= TOL
    assert (rms_norm(x) - torch.nn.functional.rms_norm(x, (64,), eps=1e-6)).abs().max() <= TOL
    xh = x.to(torch.bfloat16)
    assert ours(xh).dtype == torch.bfloat16


def test_rmsnorm_vs_diffusers_and_qknorm():
    from diffusers.models.normalization import RMSNorm as DRMSNorm

    x = torch.randn(2, 3, 7, 32)
    ref = DRMSNorm(32, eps=1e-6)
    with torch.no_grad():
        ref.weight.normal_()
    ours = RMSNorm(32, eps=1e-6)
    ours.load_state_dict(ref.state_dict())
    assert (ours(x) - ref(x)).abs().max() <= TOL
    assert (ours(x) - ours(x * 2)).abs().max() <= 1e-4  # scale invariance


def test_modulation():
    x = torch.randn(2, 5, 8)
    shift, scale = torch.randn(2, 8), torch.randn(2, 8)
    ref = x * (1 + scale[:, None]) + shift[:, None]
    assert (modulate(x, shift, scale) - ref).abs().max() <= TOL
    g, y = torch.randn(2, 8), torch.randn(2, 5, 8)
    assert (gate(x, g, y) - (x + g[:, None] * y)).abs().max() <= TOL

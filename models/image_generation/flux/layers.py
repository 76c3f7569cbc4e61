"""The FLUX.1 blocks that utils.nn does not hold, with the parameter names of the official release.

Everything generic (attention dispatch, RoPE tables and rotation, sinusoidal timesteps, RMS norm,
AdaLN modulate/gate) comes from `utils.nn`. What lives here is the FLUX-specific wiring:

- `MLPEmbedder`     in_layer -> SiLU -> out_layer (time, guidance and pooled-text embeddings);
- `QKNorm`          RMS norm of queries and keys whose gains are named `scale` (the official keys);
- `Modulation`      SiLU -> `lin`, split into one or two (shift, scale, gate) sets;
- `DoubleStreamBlock`  separate image and text weights, one joint attention over both streams;
- `SingleStreamBlock`  one stream, attention and MLP computed in parallel from one fused projection;
- `LastLayer`       AdaLN (shift, scale) then the linear that maps back to patch channels.

Tensors are (batch, tokens, channels); q, k, v are token-major (batch, tokens, heads, head_dim) until
the attention kernel, which gets (batch, heads, tokens, head_dim) views.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from utils.nn import ModulationOut, apply_rope, attention, gate, modulate, rms_norm

RopeTables = tuple[torch.Tensor, torch.Tensor]


class MLPEmbedder(nn.Module):
    """Linear -> SiLU -> Linear under the official key names (`in_layer`, `out_layer`), so released
    checkpoints load without renaming."""

    def __init__(self, in_dim: int, hidden_dim: int):
        super().__init__()
        self.in_layer = nn.Linear(in_dim, hidden_dim, bias=True)
        self.silu = nn.SiLU()
        self.out_layer = nn.Linear(hidden_dim, hidden_dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_layer(self.silu(self.in_layer(x)))


class ScaledRMSNorm(nn.Module):
    """utils.nn.rms_norm with its gain stored as `scale` (the official FLUX parameter name)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.scale, self.eps)


class QKNorm(nn.Module):
    """Per-head RMS norm of queries and keys (keys `query_norm.scale`, `key_norm.scale`)."""

    def __init__(self, head_dim: int):
        super().__init__()
        self.query_norm = ScaledRMSNorm(head_dim)
        self.key_norm = ScaledRMSNorm(head_dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.query_norm(q), self.key_norm(k)


class Modulation(nn.Module):
    """SiLU -> Linear(dim, 3 or 6 * dim): one (shift, scale, gate) set, or two for a double block."""

    def __init__(self, dim: int, double: bool):
        super().__init__()
        self.n_sets = 2 if double else 1
        self.lin = nn.Linear(dim, 3 * self.n_sets * dim, bias=True)

    def forward(self, vec: torch.Tensor) -> list[ModulationOut]:
        chunks = self.lin(F.silu(vec))[:, None, :].chunk(3 * self.n_sets, dim=-1)
        return [ModulationOut(*chunks[i:i + 3]) for i in range(0, 3 * self.n_sets, 3)]


class SelfAttention(nn.Module):
    """The projections of one stream of a double block (keys `qkv`, `norm`, `proj`); the attention
    itself runs jointly over both streams in `DoubleStreamBlock`."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.norm = QKNorm(dim // num_heads)
        self.proj = nn.Linear(dim, dim)

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, L, dim) -> normalised q, k and v, each token-major (B, L, heads, head_dim)."""
        return split_heads(self.qkv(x), self.num_heads, self.norm)


def split_heads(qkv: torch.Tensor, num_heads: int, norm: QKNorm) -> tuple[torch.Tensor, ...]:
    """A fused (B, L, 3 * heads * head_dim) projection -> RMS-normed q, k and v as (B, L, heads, head_dim).

    Token-major (B, L, heads, head_dim) keeps the norms, RoPE and the text/image concatenation on
    contiguous memory; `rope_attention` hands (B, heads, L, head_dim) views to the attention kernel.
    """
    b, length, _ = qkv.shape
    q, k, v = qkv.view(b, length, 3, num_heads, -1).unbind(2)
    q, k = norm(q, k)
    return q, k, v


def rope_tables(pe: RopeTables) -> RopeTables:
    """(B, L, D) or (L, D) RoPE tables -> broadcastable over token-major (B, L, heads, D) tensors."""
    cos, sin = pe
    if cos.ndim == 2:
        cos, sin = cos[None], sin[None]
    return cos[:, :, None], sin[:, :, None]


def rope_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pe: RopeTables) -> torch.Tensor:
    """Token-major (B, L, heads, head_dim) q, k, v: rotate q and k by the RoPE tables (from `rope_tables`),
    attend through the shared dispatcher, merge heads -> (B, L, heads * head_dim)."""
    cos, sin = pe
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    out = attention(q.transpose(1, 2), k.transpose(1, 2), v.to(q.dtype).transpose(1, 2))
    return out.transpose(1, 2).flatten(2)


class DoubleStreamBlock(nn.Module):
    """MM-DiT block: image and text tokens keep their own weights and attend to each other.

    Each stream has its modulation (`*_mod`), pre-attention norm, attention projections (`*_attn`:
    qkv, QK norm, proj), pre-MLP norm and MLP (keys .0 and .2: Linear, GELU (tanh), Linear).
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, qkv_bias: bool = True):
        super().__init__()
        mlp_hidden = int(hidden_size * mlp_ratio)
        self.num_heads = num_heads
        self.hidden_size = hidden_size
        self.img_mod = Modulation(hidden_size, double=True)
        self.img_norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.img_attn = SelfAttention(hidden_size, num_heads, qkv_bias)
        self.img_norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.img_mlp = nn.Sequential(nn.Linear(hidden_size, mlp_hidden, bias=True), nn.GELU(approximate="tanh"),
                                     nn.Linear(mlp_hidden, hidden_size, bias=True))

        self.txt_mod = Modulation(hidden_size, double=True)
        self.txt_norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.txt_attn = SelfAttention(hidden_size, num_heads, qkv_bias)
        self.txt_norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.txt_mlp = nn.Sequential(nn.Linear(hidden_size, mlp_hidden, bias=True), nn.GELU(approximate="tanh"),
                                     nn.Linear(mlp_hidden, hidden_size, bias=True))

    def forward(self, img: torch.Tensor, txt: torch.Tensor, vec: torch.Tensor,
                pe: RopeTables) -> tuple[torch.Tensor, torch.Tensor]:
        img_attn_mod, img_mlp_mod = self.img_mod(vec)
        txt_attn_mod, txt_mlp_mod = self.txt_mod(vec)

        img_q, img_k, img_v = self.img_attn.qkv_heads(
            modulate(self.img_norm1(img), img_attn_mod.shift, img_attn_mod.scale))
        txt_q, txt_k, txt_v = self.txt_attn.qkv_heads(
            modulate(self.txt_norm1(txt), txt_attn_mod.shift, txt_attn_mod.scale))

        # Text first: the RoPE tables are built from cat(txt_ids, img_ids) in that order.
        out = rope_attention(torch.cat((txt_q, img_q), dim=1), torch.cat((txt_k, img_k), dim=1),
                             torch.cat((txt_v, img_v), dim=1), pe)
        n_txt = txt.shape[1]
        txt_out, img_out = out[:, :n_txt], out[:, n_txt:]

        img = gate(img, img_attn_mod.gate, self.img_attn.proj(img_out))
        img = gate(img, img_mlp_mod.gate,
                   self.img_mlp(modulate(self.img_norm2(img), img_mlp_mod.shift, img_mlp_mod.scale)))
        txt = gate(txt, txt_attn_mod.gate, self.txt_attn.proj(txt_out))
        txt = gate(txt, txt_mlp_mod.gate,
                   self.txt_mlp(modulate(self.txt_norm2(txt), txt_mlp_mod.shift, txt_mlp_mod.scale)))
        return img, txt


class SingleStreamBlock(nn.Module):
    """Parallel attention + MLP (ViT-22B style) on the concatenated text and image tokens.

    `linear1` projects to q, k, v and the MLP hidden at once; `linear2` maps cat(attention, GELU(mlp))
    back, so each block costs two large matmuls. The GELU is the tanh approximation.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.mlp_hidden_dim = int(hidden_size * mlp_ratio)
        self.linear1 = nn.Linear(hidden_size, 3 * hidden_size + self.mlp_hidden_dim)
        self.linear2 = nn.Linear(hidden_size + self.mlp_hidden_dim, hidden_size)
        self.norm = QKNorm(hidden_size // num_heads)
        self.pre_norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.modulation = Modulation(hidden_size, double=False)

    def forward(self, x: torch.Tensor, vec: torch.Tensor, pe: RopeTables) -> torch.Tensor:
        (mod,) = self.modulation(vec)
        fused = self.linear1(modulate(self.pre_norm(x), mod.shift, mod.scale))
        qkv, mlp = fused.split((3 * self.hidden_size, self.mlp_hidden_dim), dim=-1)
        q, k, v = split_heads(qkv, self.num_heads, self.norm)
        attn = rope_attention(q, k, v, pe)
        if torch.is_grad_enabled():
            return gate(x, mod.gate, self.linear2(torch.cat((attn, F.gelu(mlp, approximate="tanh")), dim=2)))
        # Inference: `fused` holds [q | k | v | mlp] per token and linear2 reads [attention | GELU(mlp)].
        # Once attention has read v, its columns take the attention output and GELU runs in place on
        # the mlp columns, so linear2 reads fused[..., 2h:] directly: no concatenation, no new buffer.
        h = self.hidden_size
        fused[..., 2 * h:3 * h] = attn
        torch.ops.aten.gelu_(mlp, approximate="tanh")
        return gate(x, mod.gate, self.linear2(fused[..., 2 * h:]))


class LastLayer(nn.Module):
    """AdaLN-modulated LayerNorm, then Linear to patch_size² * out_channels.

    `adaLN_modulation.1` outputs (shift, scale) in that order (diffusers stores scale first).
    """

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(vec).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


__all__ = ["DoubleStreamBlock", "LastLayer", "MLPEmbedder", "Modulation", "QKNorm", "ScaledRMSNorm",
           "SelfAttention", "SingleStreamBlock", "rope_attention", "rope_tables", "split_heads"]

"""The blocks of the LTX-Video transformer, in the official release's module names.

    ltx_rope          rotary tables over fractional (frame, row, col) coordinates: the token width is
                      split into dim // 6 frequencies x 3 axes x (cos, sin) pairs, interleaved by axis,
                      applied across all heads at once (before the heads are split)
    LTXAttention      to_q / to_k / to_v / to_out.0 with biases; q_norm / k_norm RMS-normalise the full
                      query and key width; rotary positions on self-attention only
    LTXFeedForward    ff.net.0.proj (tanh-GELU to 4x), ff.net.2 back
    LTXBlock          RMS norm (no gain) -> modulated self-attention -> gated residual; cross-attention to
                      the text on the un-normed tokens; RMS norm -> modulated feed-forward -> gated residual;
                      its six modulation vectors are the shared time projection plus `scale_shift_table`
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from utils.nn.attention import attention
from utils.nn.modulation import gate, modulate
from utils.nn.norms import RMSNorm, rms_norm
from utils.nn.rope import apply_rope


def ltx_rope(coords: torch.Tensor, dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L, 3) coordinates in [0, 1] (frame, row, col, each divided by its base) -> float32 (cos, sin)
    tables (B, L, dim) for interleaved rotation. Angles are freq * pi/2 * (2c - 1) with dim // 6
    frequencies spaced geometrically in [1, theta]; the first dim % 6 channels are left unrotated."""
    n = dim // 6
    freqs = theta ** torch.linspace(0.0, 1.0, n, device=coords.device, dtype=torch.float32) * (math.pi / 2)
    angles = freqs * (coords.float()[..., None] * 2 - 1)  # (B, L, 3, n)
    angles = angles.transpose(-1, -2).flatten(-2)  # (B, L, n * 3): frequency-major, axis-minor
    cos = angles.cos().repeat_interleave(2, dim=-1)
    sin = angles.sin().repeat_interleave(2, dim=-1)
    pad = dim % 6
    if pad:
        cos = torch.cat([torch.ones_like(cos[..., :pad]), cos], dim=-1)
        sin = torch.cat([torch.zeros_like(sin[..., :pad]), sin], dim=-1)
    return cos, sin


class LTXAttention(nn.Module):
    """Multi-head attention with biased projections and q/k RMS norms across heads."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None, qk_eps: float = 1e-5):
        super().__init__()
        inner = heads * head_dim
        context_dim = context_dim or dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(context_dim, inner)
        self.to_v = nn.Linear(context_dim, inner)
        self.q_norm = RMSNorm(inner, qk_eps)
        self.k_norm = RMSNorm(inner, qk_eps)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        ctx = x if context is None else context
        q, k = self.q_norm(self.to_q(x)), self.k_norm(self.to_k(ctx))
        if rope is not None:  # the table spans the full width: rotate before splitting heads
            q = apply_rope(q[:, None], *rope, interleaved=True)[:, 0]
            k = apply_rope(k[:, None], *rope, interleaved=True)[:, 0]
        v = self.to_v(ctx)
        split = lambda t: t.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # noqa: E731
        out = attention(split(q), split(k), split(v), mask)
        return self.to_out[0](out.transpose(1, 2).flatten(2))  # to_out[1]: Dropout(0.0)


class LTXFeedForward(nn.Module):
    """Linear to 4x with tanh-GELU, then back (`net.0.proj`, `net.2`; `net.1` is a Dropout(0.0) slot)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        proj = nn.Module()
        proj.proj = nn.Linear(dim, dim * mult)
        self.net = nn.Sequential(proj, nn.Dropout(0.0), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](F.gelu(self.net[0].proj(x), approximate="tanh"))


class LTXBlock(nn.Module):
    """Self-attention, cross-attention and feed-forward, modulated by the time embedding (adaLN-single)."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int, eps: float = 1e-6,
                 qk_eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.attn1 = LTXAttention(dim, heads, head_dim, None, qk_eps)
        self.attn2 = LTXAttention(dim, heads, head_dim, context_dim, qk_eps)
        self.ff = LTXFeedForward(dim)
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim ** 0.5)

    def forward(self, x: torch.Tensor, context: torch.Tensor, temb: torch.Tensor,
                rope: tuple[torch.Tensor, torch.Tensor], context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, D); temb (B, 1 or L, 6 * D), the shared time projection per sample or per token."""
        mods = self.scale_shift_table + temb.unflatten(-1, (6, -1))  # (B, 1|L, 6, D)
        shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = mods.unbind(-2)
        x = gate(x, gate_sa, self.attn1(modulate(rms_norm(x, None, self.eps), shift_sa, scale_sa), rope=rope))
        x = x + self.attn2(x, context, context_mask)
        return gate(x, gate_ff, self.ff(modulate(rms_norm(x, None, self.eps), shift_ff, scale_ff)))


__all__ = ["LTXAttention", "LTXBlock", "LTXFeedForward", "ltx_rope"]

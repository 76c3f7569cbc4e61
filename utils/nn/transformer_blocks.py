"""The attention and feed-forward layers of latent-diffusion UNets (SD, SDXL, SVD), in the release layout.

    CrossAttention   to_q / to_k / to_v (no bias), to_out.0 (with bias): multi-head attention of x over
                     a context (itself when None), through `utils.nn.attention` (SDPA, flash, xformers)
    GEGLU            proj: a linear layer to twice the width, then value * GELU(gate)
    FeedForward      net.0 (GEGLU), net.2 (linear back); net.1 is a Dropout(0.0) slot, as in the releases

The SDXL UNet's transformer blocks and the temporal blocks of video UNets (`utils.nn.temporal`) are
built from these. When no autograd graph is recorded the layers write into fresh buffers in place
(same values as the out-of-place ops, one allocation less).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from utils.nn.attention import attention


def inference_mode_active() -> bool:
    """No graph is being recorded, so intermediate activations may be overwritten in place."""
    return not torch.is_grad_enabled()


class CrossAttention(nn.Module):
    """Multi-head attention of x over `context` (itself when None); q/k/v without bias."""

    def __init__(self, dim: int, context_dim: int, heads: int, head_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        ctx = x if context is None else context
        b = x.shape[0]
        q = self.to_q(x).view(b, x.shape[1], self.heads, -1).transpose(1, 2)
        k = self.to_k(ctx).view(b, ctx.shape[1], self.heads, -1).transpose(1, 2)
        v = self.to_v(ctx).view(b, ctx.shape[1], self.heads, -1).transpose(1, 2)
        out = attention(q, k, v)
        return self.to_out[0](out.transpose(1, 2).reshape(b, x.shape[1], -1))  # to_out[1]: Dropout(0.0)


class GEGLU(nn.Module):
    """Linear to twice the width, then value * GELU(gate)."""

    def __init__(self, dim: int, out: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate_ = self.proj(x).chunk(2, dim=-1)
        return F.gelu(gate_).mul_(value) if inference_mode_active() else value * F.gelu(gate_)


class FeedForward(nn.Module):
    """GEGLU to `mult` x the width, then a linear layer to `dim_out` (default: back to `dim`)."""

    def __init__(self, dim: int, mult: int = 4, dim_out: int | None = None):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim_out or dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))  # net[1]: Dropout(0.0)


__all__ = ["CrossAttention", "FeedForward", "GEGLU", "inference_mode_active"]

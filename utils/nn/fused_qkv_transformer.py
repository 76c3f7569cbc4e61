"""The plain pre-norm transformer of OpenAI's Point-E and Shap-E releases, in their key layout.

    MultiheadAttention         c_qkv (one linear to 3 x width), c_proj; per head the fused output
                               holds that head's query, key and value side by side
                               ([q_h | k_h | v_h], head h at channels 3*d*h ...), so a head's
                               width d is width / heads
    MLP                        c_fc (width -> 4 width), exact GELU, c_proj
    ResidualAttentionBlock     x + attn(ln_1(x)), then x + mlp(ln_2(x))
    Transformer                resblocks.N
    MultiheadCrossAttention    c_q over the queries, c_kv (data width -> 2 x width: per head
                               [k_h | v_h]) over the data, c_proj
    ResidualCrossAttentionBlock  x + attn(ln_1(x), ln_2(data)), then x + mlp(ln_3(x))
    SimplePerceiver            resblocks.N of cross-attention blocks only (Point-E's SDF decoder)

Attention runs through `utils.nn.attention` (SDPA, flash, xformers; 'math' is the plain softmax
reference), so it is the one attention of the zoo. The releases scale q and k by d^-1/4 each and
take the softmax in float32; that equals softmax(q k^T / sqrt(d)) up to rounding.
"""
from __future__ import annotations

import torch
from torch import nn

from utils.nn.attention import attention

__all__ = ["MLP", "MultiheadAttention", "MultiheadCrossAttention", "ResidualAttentionBlock",
           "ResidualCrossAttentionBlock", "SimplePerceiver", "Transformer"]


def _heads(x: torch.Tensor, heads: int, parts: int) -> list[torch.Tensor]:
    """(B, L, heads * parts * d) laid out per head -> `parts` tensors (B, heads, L, d)."""
    b, n, w = x.shape
    return [t.transpose(1, 2) for t in x.view(b, n, heads, parts, w // (heads * parts)).unbind(3)]


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, L, d) -> (B, L, heads * d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class MLP(nn.Module):
    """c_fc, GELU, c_proj."""

    def __init__(self, width: int):
        super().__init__()
        self.c_fc = nn.Linear(width, width * 4)
        self.c_proj = nn.Linear(width * 4, width)
        self.gelu = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class MultiheadAttention(nn.Module):
    """Self-attention with one fused query/key/value projection (`c_qkv`, laid out per head)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of {heads} heads")
        self.heads = heads
        self.c_qkv = nn.Linear(width, width * 3)
        self.c_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = _heads(self.c_qkv(x), self.heads, 3)
        return self.c_proj(_merge(attention(q, k, v)))


class MultiheadCrossAttention(nn.Module):
    """Attention of x over `data`: c_q on x, one fused key/value projection `c_kv` (per head) on data."""

    def __init__(self, width: int, heads: int, data_width: int | None = None):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of {heads} heads")
        self.heads = heads
        self.c_q = nn.Linear(width, width)
        self.c_kv = nn.Linear(width if data_width is None else data_width, width * 2)
        self.c_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        (q,) = _heads(self.c_q(x), self.heads, 1)
        k, v = _heads(self.c_kv(data), self.heads, 2)
        return self.c_proj(_merge(attention(q, k, v)))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = MLP(width)
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """`layers` self-attention blocks (`resblocks.N`)."""

    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.width = width
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class ResidualCrossAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, data_width: int | None = None):
        super().__init__()
        data_width = width if data_width is None else data_width
        self.attn = MultiheadCrossAttention(width, heads, data_width)
        self.ln_1 = nn.LayerNorm(width)
        self.ln_2 = nn.LayerNorm(data_width)
        self.mlp = MLP(width)
        self.ln_3 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), self.ln_2(data))
        return x + self.mlp(self.ln_3(x))


class SimplePerceiver(nn.Module):
    """`layers` cross-attention blocks of queries over a fixed data set (`resblocks.N`)."""

    def __init__(self, width: int, layers: int, heads: int, data_width: int | None = None):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualCrossAttentionBlock(width, heads, data_width) for _ in range(layers)])

    def forward(self, x: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, data)
        return x

"""Rotary position embeddings: 1-D and FLUX's multi-axis form.

Each axis i of a position id gets `axes_dim[i]` channels of the head (FLUX: (16, 56, 56) for
(text/frame index, row, col), theta 10000). Frequencies are computed in float64 where the device
allows it (as the official FLUX code does) and returned as float32 (cos, sin) tables of shape
(..., L, head_dim).

Two channel layouts exist: `interleaved=True` rotates the pairs (x0, x1), (x2, x3)... (FLUX,
HunyuanDiT, CogVideoX); `interleaved=False` rotates (x_i, x_{i+D/2}) (the "rotate half" form).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _freq_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type in ("mps", "npu") else torch.float64


def rope_1d(positions: torch.Tensor, dim: int, theta: float = 10000.0,
            interleaved: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(…, L) positions -> float32 (cos, sin), each (…, L, dim)."""
    if dim % 2:
        raise ValueError(f"rotary dim must be even, got {dim}")
    dtype = _freq_dtype(positions.device)
    inv = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=dtype, device=positions.device) / dim)
    angles = positions.to(dtype)[..., None] * inv  # (…, L, dim/2)
    cos, sin = angles.cos(), angles.sin()
    if interleaved:
        cos, sin = cos.repeat_interleave(2, dim=-1), sin.repeat_interleave(2, dim=-1)
    else:
        cos, sin = torch.cat([cos, cos], dim=-1), torch.cat([sin, sin], dim=-1)
    return cos.float(), sin.float()


def rope_nd(ids: torch.Tensor, axes_dim: Sequence[int], theta: float = 10000.0,
            interleaved: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(…, L, n_axes) position ids -> float32 (cos, sin), each (…, L, sum(axes_dim))."""
    if ids.shape[-1] != len(axes_dim):
        raise ValueError(f"ids have {ids.shape[-1]} axes but axes_dim has {len(axes_dim)} entries")
    parts = [rope_1d(ids[..., i], d, theta, interleaved) for i, d in enumerate(axes_dim)]
    return torch.cat([c for c, _ in parts], dim=-1), torch.cat([s for _, s in parts], dim=-1)


def _rotate(x: torch.Tensor, interleaved: bool) -> torch.Tensor:
    # The partner of each channel times the sign of the rotation: (a, b) -> (-b, a).
    if interleaved:
        a, b = x.unflatten(-1, (-1, 2)).unbind(-1)
        return torch.stack([-b, a], dim=-1).flatten(-2)
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool = True) -> torch.Tensor:
    """Rotate (B, heads, L, D) queries or keys by (L, D) or (B, L, D) tables; math in float32.

    Only the first cos.shape[-1] channels are rotated when the table is narrower than D.
    """
    if cos.ndim == 2:
        cos, sin = cos[None, None], sin[None, None]
    elif cos.ndim == 3:
        cos, sin = cos[:, None], sin[:, None]
    cos, sin = cos.to(x.device), sin.to(x.device)
    d = cos.shape[-1]
    if d < x.shape[-1]:
        return torch.cat([apply_rope(x[..., :d], cos, sin, interleaved), x[..., d:]], dim=-1)
    xf = x.float()
    if interleaved and x.device.type not in ("mps", "npu"):
        return _turn_pairs(xf, cos, sin).to(x.dtype)
    return (xf * cos + _rotate(xf, interleaved) * sin).to(x.dtype)


def _turn_pairs(xf: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Interleaved rotation as one complex multiply: each pair (x0, x1) is x0 + i x1 turned by its angle,
    whose cos/sin sit twice in the tables (one read of x and one write, instead of five passes)."""
    if xf.stride(-1) != 1 or xf.storage_offset() % 2 or any(s % 2 for s in xf.stride()[:-1]):
        xf = xf.clone(memory_format=torch.contiguous_format)  # view_as_complex needs aligned adjacent pairs
    turn = torch.complex(cos[..., ::2].float(), sin[..., ::2].float())
    return torch.view_as_real(torch.view_as_complex(xf.unflatten(-1, (-1, 2))) * turn).flatten(-2)


class RotaryEmbedding(nn.Module):
    """Multi-axis RoPE tables from position ids (FLUX's `EmbedND`; diffusers' `FluxPosEmbed`)."""

    def __init__(self, axes_dim: Sequence[int], theta: float = 10000.0, interleaved: bool = True):
        super().__init__()
        self.axes_dim, self.theta, self.interleaved = tuple(int(d) for d in axes_dim), float(theta), interleaved

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return rope_nd(ids, self.axes_dim, self.theta, self.interleaved)


def grid_ids(height: int, width: int, frames: int | None = None, first: float = 0.0,
             device: torch.device | str | None = None) -> torch.Tensor:
    """Position ids of a token grid, row-major: (H*W, 3) as (first, row, col), or (F*H*W, 3) as (frame, row, col).

    FLUX image tokens use (0, row, col) and its text tokens all zeros.
    """
    rows = torch.arange(height, device=device, dtype=torch.float32)
    cols = torch.arange(width, device=device, dtype=torch.float32)
    if frames is None:
        r, c = torch.meshgrid(rows, cols, indexing="ij")
        lead = torch.full_like(r, float(first))
        return torch.stack([lead, r, c], dim=-1).reshape(-1, 3)
    f = torch.arange(frames, device=device, dtype=torch.float32) + first
    ff, r, c = torch.meshgrid(f, rows, cols, indexing="ij")
    return torch.stack([ff, r, c], dim=-1).reshape(-1, 3)


__all__ = ["RotaryEmbedding", "apply_rope", "grid_ids", "rope_1d", "rope_nd"]

"""The interleaved RoPE fast path (one complex multiply) against the rotate-and-add form it replaced, on
the layouts its callers hand it: transposed head views (Wan), partial tables (LTX's unrotated channels),
per-sample tables, odd offsets, bfloat16, and gradients."""
from __future__ import annotations

import pytest
import torch

from utils.nn.rope import _rotate, apply_rope, grid_ids, rope_nd


def _reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    cos, sin = (cos[None, None], sin[None, None]) if cos.ndim == 2 else (cos[:, None], sin[:, None])
    d = cos.shape[-1]
    xf = x.float()
    out = xf[..., :d] * cos + _rotate(xf[..., :d], True) * sin
    return torch.cat([out, xf[..., d:]], dim=-1).to(x.dtype)


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "odd-offset", "per-sample", "partial"])
def test_pairs_equal_rotate_and_add(layout):
    g = torch.Generator().manual_seed(0)
    cos, sin = rope_nd(grid_ids(3, 4, 2), (4, 6, 6))  # (24, 16)
    if layout == "contiguous":
        x = torch.randn(2, 3, 24, 16, generator=g)
    elif layout == "transposed":  # (B, L, heads, D) -> (B, heads, L, D) as attention layers make it
        x = torch.randn(2, 24, 3, 16, generator=g).transpose(1, 2)
    elif layout == "odd-offset":  # a view starting at an odd element: copied before the complex view
        x = torch.randn(2 * 3 * 24 * 16 + 1, generator=g)[1:].view(2, 3, 24, 16)
    elif layout == "per-sample":
        x = torch.randn(2, 3, 24, 16, generator=g)
        cos, sin = torch.stack([cos, cos.flip(0)]), torch.stack([sin, sin.flip(0)])
    else:  # a table narrower than the head: the last channels pass unrotated
        x = torch.randn(2, 3, 24, 20, generator=g)
    assert (apply_rope(x, cos, sin) - _reference(x, cos, sin)).abs().max().item() <= 1e-6


def test_pairs_bfloat16_and_gradients():
    cos, sin = rope_nd(grid_ids(2, 2, 2), (4, 2, 2))
    x = torch.randn(1, 2, 8, 8, dtype=torch.bfloat16)
    out = apply_rope(x, cos, sin)
    assert out.dtype == torch.bfloat16
    assert (out.float() - _reference(x, cos, sin).float()).abs().max().item() <= 1e-2
    xf = torch.randn(1, 2, 8, 8, requires_grad=True)
    xr = xf.detach().clone().requires_grad_(True)
    (apply_rope(xf, cos, sin) ** 2 * torch.arange(8.0)).sum().backward()
    (_reference(xr, cos, sin) ** 2 * torch.arange(8.0)).sum().backward()
    assert (xf.grad - xr.grad).abs().max().item() <= 1e-5

"""RMS norm: the function (FLUX's QK norm, whose gains are named `scale`) and the module (SD3's `ln_q`/`ln_k`);
GroupNorm computed in float32 (the SD/SDXL/SVD UNets' `GroupNorm32`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(mean(x², last dim) + eps) * weight, computed in float32 and returned in x's dtype."""
    xf = x.float()
    out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        out = out * weight.float()
    return out.to(x.dtype)


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dim; the learnable gain is named `weight`."""

    def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if elementwise_affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 (the releases do this so fp16 activations stay stable)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return super().forward(x)
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


__all__ = ["GroupNorm32", "RMSNorm", "rms_norm"]

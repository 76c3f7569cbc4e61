"""RMSNorm and the per-head query/key normalisation of SD3, FLUX and video transformers."""
from __future__ import annotations

import torch
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


class QKNorm(nn.Module):
    """RMSNorm of queries and keys over the head dim (FLUX: `query_norm`, `key_norm`)."""

    def __init__(self, head_dim: int, eps: float = 1e-6, elementwise_affine: bool = True):
        super().__init__()
        self.query_norm = RMSNorm(head_dim, eps, elementwise_affine)
        self.key_norm = RMSNorm(head_dim, eps, elementwise_affine)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.query_norm(q), self.key_norm(k)


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the activation dtype (stable under fp16/bf16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return nn.functional.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


__all__ = ["LayerNorm32", "QKNorm", "RMSNorm", "rms_norm"]

"""Opacity and scale of Gaussians that are copied onto one another (3DGS-MCMC, Kheradmand et al. 2024, eq. 9).

The torch reference of gsplat's `relocation` CUDA kernel (`gsplat.relocation.compute_relocation`):
the same formula, evaluated for all Gaussians at once, accumulated in float64 (the alternating sum
of binomial terms cancels heavily for many copies of a nearly opaque Gaussian; float32 loses
digits there) and returned in the input dtype.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["binomial_table", "compute_relocation"]


def binomial_table(n_max: int = 51) -> Tensor:
    """(n_max, n_max) float32 table with C(n, k) at [n, k] (zero for k > n)."""
    return torch.tensor([[math.comb(n, k) for k in range(n_max)] for n in range(n_max)], dtype=torch.float32)


def compute_relocation(opacities: Tensor, scales: Tensor, ratios: Tensor, binoms: Tensor) -> tuple[Tensor, Tensor]:
    """New opacity (N,) and scale (N, 3) for each of N Gaussians that `ratios` (N,) copies will share,
    so that the copies together render like the original.

    With n = ratios clamped to [1, n_max] and o the opacity:
        o' = 1 - (1 - o)^(1/n)
        s' = s * o / sum_{i=1}^{n} sum_{k=0}^{i-1} C(i-1, k) (-1)^k o'^(k+1) / sqrt(k+1)
    `scales` are the activated scales (not logs); `binoms` is `binomial_table(n_max)`.
    """
    n_max = binoms.shape[0]
    dtype, device = opacities.dtype, opacities.device
    o = opacities.double()
    n = ratios.clamp(1, n_max).to(torch.float64)
    new_op = 1.0 - torch.pow(1.0 - o, 1.0 / n)
    k = torch.arange(n_max, device=device, dtype=torch.float64)
    # row i - 1 of the table for i = 1..n_max: the k-sum of every i at once, then the i-sum up to n
    per_k = binoms.to(device, torch.float64) * ((-1.0) ** k / torch.sqrt(k + 1.0))[None]  # (i, k)
    powers = new_op[:, None] ** (k + 1.0)[None]  # (N, k)
    inner = powers @ per_k.T  # (N, i)
    i = torch.arange(1, n_max + 1, device=device, dtype=torch.float64)
    denom = (inner * (i[None] <= n[:, None])).sum(-1)
    new_scales = scales.double() * (o / denom)[:, None]
    return new_op.to(dtype), new_scales.to(dtype)

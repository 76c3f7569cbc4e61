"""Scene contraction for unbounded scenes (mip-NeRF 360, Barron et al. 2022, eq. 10).

    contract(x) = x                          if ||x|| <= 1
                  (2 - 1 / ||x||) x / ||x||   otherwise

maps all of space into the ball (or, with the L-inf norm that nerfstudio uses for hash grids,
the cube) of radius 2; `normalized_contract` then maps that to [0, 1]^3 for a grid encoding.
"""
from __future__ import annotations

import torch
from torch import Tensor

from utils.errors import UserError

__all__ = ["contract", "normalized_contract", "NORMS"]

NORMS = ("l2", "inf")


def contract(x: Tensor, norm: str = "inf") -> Tensor:
    """Points (..., 3) of all space into radius 2 (`norm` "l2": a ball, "inf": a cube)."""
    if norm not in NORMS:
        raise UserError(f"unknown contraction norm '{norm}': use l2 or inf")
    mag = x.norm(dim=-1, keepdim=True) if norm == "l2" else x.abs().amax(-1, keepdim=True)
    safe = mag.clamp_min(1e-12)
    return torch.where(mag <= 1, x, (2 - 1 / safe) * (x / safe))


def normalized_contract(x: Tensor, aabb: Tensor | None = None, norm: str = "inf") -> Tensor:
    """Points in [0, 1]^3: contracted after mapping `aabb` (6,) to [-1, 1]^3 (the unit region)."""
    if aabb is not None:
        lo, hi = aabb[:3].to(x), aabb[3:].to(x)
        x = (x - lo) / (hi - lo) * 2 - 1
    return (contract(x, norm) + 2) / 4

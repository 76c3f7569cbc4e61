"""Real spherical harmonics up to degree 3, in the sign convention of the 3DGS / gsplat code.

Colours are stored as SH coefficients (K = (degree + 1)^2 per channel); the DC term alone gives
a view-independent colour `rgb = SH_C0 * dc + 0.5`.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["SH_C0", "num_sh_bases", "eval_sh_bases", "spherical_harmonics", "rgb_to_sh", "sh_to_rgb"]

SH_C0 = 0.28209479177387814  # 1 / (2 sqrt(pi))
SH_C1 = 0.4886025119029199  # sqrt(3 / (4 pi))
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def num_sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


def eval_sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """The (degree + 1)^2 basis functions at unit directions `dirs` (..., 3) -> (..., K)."""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be 0..3, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [SH_C2[0] * xy, SH_C2[1] * yz, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * xz, SH_C2[4] * (xx - yy)]
    if degree >= 3:
        out += [SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * xy * z, SH_C3[2] * y * (4 * zz - xx - yy),
                SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
                SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy)]
    return torch.stack(out, dim=-1)


def spherical_harmonics(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate SH colours: `dirs` (..., 3) (any length), `coeffs` (..., K, C) -> (..., C).

    Only the first (degree + 1)^2 coefficients are used, so a model can raise its degree during
    training while keeping all coefficients allocated. No +0.5 offset is added here.
    """
    k = num_sh_bases(degree)
    if coeffs.shape[-2] < k:
        raise ValueError(f"degree {degree} needs {k} coefficients, got {coeffs.shape[-2]}")
    bases = eval_sh_bases(degree, torch.nn.functional.normalize(dirs, dim=-1))
    return (bases[..., None] * coeffs[..., :k, :]).sum(-2)


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """The DC coefficient that renders `rgb` (in [0, 1])."""
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(sh0: Tensor) -> Tensor:
    return sh0 * SH_C0 + 0.5

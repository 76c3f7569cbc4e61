"""EWA projection of 3D Gaussians to screen space (Zwicker et al. 2001; Kerbl et al. 2023).

Pure PyTorch, differentiable by autograd, any float dtype. Function names follow the gsplat
kernels they mirror (`quat_scale_to_covar_preci`, `fully_fused_projection`), so the CPU path and
the CUDA path can be read side by side.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["quat_to_rotmat", "quat_scale_to_covar_preci", "world_to_cam", "persp_proj", "fully_fused_projection"]

ALPHA_THRESHOLD = 1.0 / 255.0
"""A Gaussian whose alpha at a pixel is below this is skipped there (as in the CUDA kernels)."""


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) from quaternions (..., 4) in wxyz order (normalised here)."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def quat_scale_to_covar_preci(quats: Tensor, scales: Tensor, compute_covar: bool = True,
                              compute_preci: bool = False) -> tuple[Tensor | None, Tensor | None]:
    """Covariance R S S^T R^T and precision (its inverse) of Gaussians with `scales` (not logs)."""
    R = quat_to_rotmat(quats)
    covars = precis = None
    if compute_covar:
        M = R * scales[..., None, :]
        covars = M @ M.transpose(-1, -2)
    if compute_preci:
        P = R / scales[..., None, :]
        precis = P @ P.transpose(-1, -2)
    return covars, precis


def world_to_cam(means: Tensor, covars: Tensor, viewmats: Tensor) -> tuple[Tensor, Tensor]:
    """Means (N, 3) and covariances (N, 3, 3) seen from C cameras: (C, N, 3), (C, N, 3, 3)."""
    R, t = viewmats[:, None, :3, :3], viewmats[:, None, :3, 3]
    means_c = (R @ means[None, :, :, None]).squeeze(-1) + t
    covars_c = R @ covars[None] @ R.transpose(-1, -2)
    return means_c, covars_c


def persp_proj(means_c: Tensor, covars_c: Tensor, Ks: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
    """Pinhole projection of camera-space Gaussians: pixel means (C, N, 2), 2D covariances (C, N, 2, 2).

    The covariance uses the Jacobian of the projection at the mean (the EWA local affine
    approximation). Means far outside the view are clamped to a slightly widened frustum before
    the Jacobian is taken, which keeps it bounded for Gaussians near the image border.
    """
    x, y, z = means_c.unbind(-1)
    fx, fy = Ks[:, None, 0, 0], Ks[:, None, 1, 1]
    cx, cy = Ks[:, None, 0, 2], Ks[:, None, 1, 2]
    margin_x, margin_y = 0.3 * 0.5 * width / fx, 0.3 * 0.5 * height / fy
    xz = torch.clamp(x / z, min=-(cx / fx + margin_x), max=(width - cx) / fx + margin_x)
    yz = torch.clamp(y / z, min=-(cy / fy + margin_y), max=(height - cy) / fy + margin_y)
    zero = torch.zeros_like(z)
    J = torch.stack([fx / z, zero, -fx * xz / z, zero, fy / z, -fy * yz / z], dim=-1).reshape(z.shape + (2, 3))
    covars2d = J @ covars_c @ J.transpose(-1, -2)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)
    return means2d, covars2d


def fully_fused_projection(means: Tensor, covars: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int,
                           eps2d: float = 0.3, near_plane: float = 0.01, far_plane: float = 1e10,
                           opacities: Tensor | None = None, calc_compensations: bool = False
                           ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """Project N Gaussians into C cameras.

    Returns `radii` (C, N, 2) int32 pixel half-extents (0 = culled), `means2d` (C, N, 2), `depths`
    (C, N) camera-space z, `conics` (C, N, 3) = the upper triangle (a, b, c) of the inverse 2D
    covariance, and the antialiasing `compensations` (C, N) when asked for.

    `eps2d` is added to the 2D covariance diagonal (a low-pass filter of about one pixel). The
    extent is 3.33 sigma; with `opacities` (N,) it shrinks to where alpha falls below 1/255, so
    faint Gaussians touch fewer tiles without changing the image.
    """
    means_c, covars_c = world_to_cam(means, covars, viewmats)
    means2d, covars2d = persp_proj(means_c, covars_c, Ks, width, height)
    det_orig = covars2d[..., 0, 0] * covars2d[..., 1, 1] - covars2d[..., 0, 1] * covars2d[..., 1, 0]
    covars2d = covars2d + eps2d * torch.eye(2, dtype=means.dtype, device=means.device)
    a, b, c = covars2d[..., 0, 0], 0.5 * (covars2d[..., 0, 1] + covars2d[..., 1, 0]), covars2d[..., 1, 1]
    det = (a * c - b * b).clamp(min=1e-10)
    compensations = torch.sqrt((det_orig / det).clamp(min=0.0)) if calc_compensations else None
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)
    depths = means_c[..., 2]

    with torch.no_grad():
        extent = torch.full_like(depths, 3.33)
        if opacities is not None:
            op = opacities.detach()[None].expand_as(depths)
            if compensations is not None:
                op = op * compensations.detach()
            # alpha = op * exp(-r^2 / 2) reaches the threshold at r = sqrt(2 ln(op / threshold))
            extent = torch.minimum(extent, torch.sqrt(2.0 * torch.log((op / ALPHA_THRESHOLD).clamp(min=1.0))))
        radius = torch.ceil(torch.stack([extent * torch.sqrt(a.detach()), extent * torch.sqrt(c.detach())], -1))
        valid = (det > 0) & (depths > near_plane) & (depths < far_plane) & (extent > 0)
        m = means2d.detach()
        inside = ((m[..., 0] + radius[..., 0] > 0) & (m[..., 0] - radius[..., 0] < width)
                  & (m[..., 1] + radius[..., 1] > 0) & (m[..., 1] - radius[..., 1] < height))
        radius = torch.where((valid & inside)[..., None], radius, torch.zeros_like(radius))
        radii = radius.to(torch.int32)
    return radii, means2d, depths, conics, compensations


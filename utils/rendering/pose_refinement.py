"""Learned camera-pose corrections (nerfstudio's SO3xR3 camera optimiser, as nerfacto trains it).

Every training image gets a 6-vector (omega, tau): a rotation exp(omega^) by Rodrigues' formula
and a translation tau, both in the camera's own frame, so the corrected camera-to-world pose is
c2w [R(omega) | tau]. Rays are corrected in place of the cameras: a ray of camera c with
origin o and direction d becomes o + R_c tau and R_c R(omega) R_c^T d (R_c the camera's
rotation). The corrections start at zero (the given poses).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from utils.rendering.rays import RayBundle

__all__ = ["so3_exp", "PoseRefinement"]


def so3_exp(omega: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) of axis-angle vectors (..., 3) (Rodrigues; exact near 0)."""
    theta2 = (omega * omega).sum(-1, keepdim=True)[..., None]
    theta = torch.sqrt(theta2.clamp_min(1e-20))
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-20))
    x, y, z = omega.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(omega.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device).expand_as(K)
    return eye + a * K + b * (K @ K)


class PoseRefinement(nn.Module):
    """One learned (omega, tau) per training image; `forward` corrects rays of those images."""

    def __init__(self, num_images: int):
        super().__init__()
        self.deltas = nn.Parameter(torch.zeros(max(num_images, 1), 6))

    def corrections(self, camera_indices: Tensor) -> tuple[Tensor, Tensor]:
        d = self.deltas[camera_indices]
        return so3_exp(d[:, :3]), d[:, 3:]

    def forward(self, rays: RayBundle, camtoworlds: Tensor) -> RayBundle:
        """Rays of training cameras `camtoworlds` (C, 4, 4) with their poses corrected."""
        R_delta, tau = self.corrections(rays.camera_indices)
        R_cam = camtoworlds[rays.camera_indices, :3, :3].to(rays.directions)
        origins = rays.origins + (R_cam @ tau[..., None]).squeeze(-1)
        d_cam = (R_cam.transpose(-1, -2) @ rays.directions[..., None])
        directions = (R_cam @ (R_delta @ d_cam)).squeeze(-1)
        return RayBundle(origins, directions, rays.radii, rays.camera_indices)

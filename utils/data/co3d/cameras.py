"""CO3D viewpoints (the PyTorch3D camera convention) and the zoo's OpenCV `Cameras`.

A CO3D frame annotation stores `viewpoint = {R, T, focal_length, principal_point, intrinsics_format}`
in PyTorch3D's convention: a world point X (row vector) maps to camera space as `X @ R + T`, with
camera axes +X left, +Y up, +Z forward, and focal length and principal point in NDC units
(`ndc_isotropic`: both axes scaled by half the shorter image side, CO3D v2; `ndc_norm_image_bounds`:
each axis by half its own side, CO3D v1). NDC +1 is the left (x) and top (y) image edge.

`utils.rendering.cameras` uses OpenCV axes (x right, y down, z forward) and pixel intrinsics; the two
functions here convert both ways, and `pose_vector` is what the voxel VAE-GAN's pose encoder reads.
"""
from __future__ import annotations

import torch
from torch import Tensor

from utils.errors import UserError
from utils.rendering.cameras import Cameras

__all__ = ["look_at_view", "viewpoint_to_cameras", "cameras_to_viewpoint", "camera_centers", "pose_vector",
           "POSE_DIM", "INTRINSICS_FORMATS"]

INTRINSICS_FORMATS = ("ndc_isotropic", "ndc_norm_image_bounds")
POSE_DIM = 12
"""Length of `pose_vector`: the 9 entries of R and the unit direction to the camera centre."""

_FLIP = torch.tensor([-1.0, -1.0, 1.0])  # PyTorch3D camera axes <-> OpenCV camera axes


def look_at_view(eye: Tensor, at: Tensor, up: Tensor) -> tuple[Tensor, Tensor]:
    """PyTorch3D (R, T) of cameras at `eye` (N, 3) looking at `at`, `up` the world's up direction."""
    z = torch.nn.functional.normalize(at - eye, dim=-1)
    x = torch.nn.functional.normalize(torch.linalg.cross(up.expand_as(z), z), dim=-1)
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z], dim=-1)  # column j: camera axis j in world coordinates
    T = -torch.einsum("ni,nij->nj", eye, R)
    return R, T


def camera_centers(R: Tensor, T: Tensor) -> Tensor:
    """World positions (..., 3) of PyTorch3D cameras: the C with C @ R + T = 0."""
    return -torch.einsum("...j,...ij->...i", T, R)


def _ndc_scales(fmt: str, width: int, height: int) -> tuple[float, float]:
    if fmt == "ndc_isotropic":
        s = min(width, height) / 2.0
        return s, s
    if fmt == "ndc_norm_image_bounds":
        return width / 2.0, height / 2.0
    raise UserError(f"unknown CO3D intrinsics_format '{fmt}': expected one of {', '.join(INTRINSICS_FORMATS)}")


def viewpoint_to_cameras(R: Tensor, T: Tensor, focal_length: Tensor, principal_point: Tensor, width: int,
                         height: int, intrinsics_format: str = "ndc_isotropic") -> Cameras:
    """CO3D viewpoints (R (N, 3, 3), T (N, 3), focal (N, 2), principal point (N, 2)) as OpenCV `Cameras`."""
    R, T = R.float(), T.float()
    sx, sy = _ndc_scales(intrinsics_format, width, height)
    n = R.shape[0]
    viewmats = torch.zeros(n, 4, 4)
    viewmats[:, :3, :3] = _FLIP[None, :, None] * R.transpose(1, 2)
    viewmats[:, :3, 3] = _FLIP * T
    viewmats[:, 3, 3] = 1.0
    Ks = torch.zeros(n, 3, 3)
    Ks[:, 0, 0] = focal_length[:, 0] * sx
    Ks[:, 1, 1] = focal_length[:, 1] * sy
    Ks[:, 0, 2] = width / 2.0 - principal_point[:, 0] * sx
    Ks[:, 1, 2] = height / 2.0 - principal_point[:, 1] * sy
    Ks[:, 2, 2] = 1.0
    return Cameras(viewmats, Ks, width, height)


def cameras_to_viewpoint(cameras: Cameras, intrinsics_format: str = "ndc_isotropic") -> dict[str, Tensor]:
    """The inverse of `viewpoint_to_cameras`: {R, T, focal_length, principal_point} tensors."""
    sx, sy = _ndc_scales(intrinsics_format, cameras.width, cameras.height)
    W = cameras.viewmats[:, :3, :3]
    R = (_FLIP[None, :, None] * W).transpose(1, 2)
    T = _FLIP * cameras.viewmats[:, :3, 3]
    Ks = cameras.Ks
    focal = torch.stack([Ks[:, 0, 0] / sx, Ks[:, 1, 1] / sy], -1)
    pp = torch.stack([(cameras.width / 2.0 - Ks[:, 0, 2]) / sx, (cameras.height / 2.0 - Ks[:, 1, 2]) / sy], -1)
    return {"R": R, "T": T, "focal_length": focal, "principal_point": pp}


def pose_vector(R: Tensor, T: Tensor) -> Tensor:
    """(..., 12): R's nine entries and the unit direction from the world origin to the camera centre.

    Rotation and direction do not depend on the arbitrary scale of a CO3D reconstruction.
    """
    c = torch.nn.functional.normalize(camera_centers(R, T), dim=-1)
    return torch.cat([R.flatten(-2), c], -1)

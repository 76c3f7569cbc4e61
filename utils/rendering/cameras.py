"""Pinhole cameras shared by every 3D renderer (Gaussian splatting, NeRF, EG3D...).

Convention: OpenCV axes in camera space (x right, y down, z forward, looking down +z) and a
world-to-camera 4x4 matrix per view (`viewmats`), with 3x3 intrinsics `Ks` in pixels. A pixel
(i, j) covers [i, i+1) x [j, j+1), so its centre is at (i + 0.5, j + 0.5); `cx = W / 2` puts the
principal point in the middle of the image. Data readers convert other conventions on load
(`opengl_to_opencv` for NeRF-synthetic / Blender cameras).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Cameras", "intrinsics_from_fov", "look_at", "opengl_to_opencv", "orbit_cameras", "camera_rays"]


@dataclass
class Cameras:
    """A batch of C pinhole cameras of one image size."""

    viewmats: Tensor
    """World-to-camera matrices, OpenCV axes, shape (C, 4, 4)."""
    Ks: Tensor
    """Intrinsics in pixels, shape (C, 3, 3)."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""

    def __len__(self) -> int:
        return self.viewmats.shape[0]

    def __getitem__(self, idx) -> "Cameras":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1) if idx != -1 else slice(-1, None)
        return Cameras(self.viewmats[idx], self.Ks[idx], self.width, self.height)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Cameras":
        return Cameras(self.viewmats.to(device=device, dtype=dtype), self.Ks.to(device=device, dtype=dtype),
                       self.width, self.height)

    @property
    def camtoworlds(self) -> Tensor:
        """Camera-to-world matrices (C, 4, 4)."""
        return torch.linalg.inv(self.viewmats)

    @property
    def centers(self) -> Tensor:
        """Camera positions in world space (C, 3)."""
        return self.camtoworlds[:, :3, 3]

    def scaled(self, factor: float) -> "Cameras":
        """The same views at `factor` times the resolution (intrinsics scaled with the image)."""
        width, height = int(round(self.width * factor)), int(round(self.height * factor))
        Ks = self.Ks.clone()
        Ks[:, 0, :] *= width / self.width
        Ks[:, 1, :] *= height / self.height
        return Cameras(self.viewmats, Ks, width, height)


def intrinsics_from_fov(fov_x: float, width: int, height: int, fov_y: float | None = None) -> Tensor:
    """A 3x3 pinhole matrix for horizontal field of view `fov_x` (radians), centred principal point."""
    fx = 0.5 * width / math.tan(0.5 * fov_x)
    fy = fx if fov_y is None else 0.5 * height / math.tan(0.5 * fov_y)
    return torch.tensor([[fx, 0.0, width / 2.0], [0.0, fy, height / 2.0], [0.0, 0.0, 1.0]])


def opengl_to_opencv(camtoworld: Tensor) -> Tensor:
    """Flip the y and z camera axes: OpenGL/Blender (y up, looking down -z) to OpenCV (y down, +z)."""
    out = camtoworld.clone()
    out[..., :3, 1:3] *= -1
    return out


def look_at(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """Camera-to-world matrices (..., 4, 4), OpenCV axes, for cameras at `eye` looking at `target`."""
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, up.expand_as(forward)), dim=-1)
    down = torch.linalg.cross(forward, right)
    c2w = torch.zeros(eye.shape[:-1] + (4, 4), dtype=eye.dtype, device=eye.device)
    c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2], c2w[..., :3, 3] = right, down, forward, eye
    c2w[..., 3, 3] = 1.0
    return c2w


def orbit_cameras(n: int, radius: float, width: int, height: int, fov_x: float = math.radians(40),
                  elevation: float = math.radians(25), target: tuple[float, float, float] = (0.0, 0.0, 0.0),
                  up: tuple[float, float, float] = (0.0, 0.0, 1.0), start: float = 0.0) -> Cameras:
    """`n` cameras on a circle around `target` (z up by default), `elevation` radians above it."""
    az = start + torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
    up_t = torch.tensor(up, dtype=torch.float64)
    # an orthonormal frame (a, b, up) around the up axis
    a = torch.nn.functional.normalize(torch.linalg.cross(up_t, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
                                                         if abs(up_t[0]) < 0.9 else
                                                         torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)), dim=0)
    b = torch.linalg.cross(up_t, a)
    ring = math.cos(elevation) * (torch.cos(az)[:, None] * a + torch.sin(az)[:, None] * b)
    eye = torch.tensor(target, dtype=torch.float64) + radius * (ring + math.sin(elevation) * up_t)
    c2w = look_at(eye, torch.tensor(target, dtype=torch.float64).expand_as(eye), up_t)
    viewmats = torch.linalg.inv(c2w).float()
    Ks = intrinsics_from_fov(fov_x, width, height).expand(n, 3, 3).clone()
    return Cameras(viewmats, Ks, width, height)


def camera_rays(cameras: Cameras, normalize: bool = True) -> tuple[Tensor, Tensor]:
    """World-space ray origins and directions through every pixel centre, each (C, H, W, 3)."""
    device, dtype = cameras.viewmats.device, cameras.viewmats.dtype
    v, u = torch.meshgrid(torch.arange(cameras.height, device=device, dtype=dtype) + 0.5,
                          torch.arange(cameras.width, device=device, dtype=dtype) + 0.5, indexing="ij")
    Ks = cameras.Ks[:, None, None]
    dirs_cam = torch.stack([(u - Ks[..., 0, 2]) / Ks[..., 0, 0], (v - Ks[..., 1, 2]) / Ks[..., 1, 1],
                            torch.ones_like(u).expand(len(cameras), -1, -1)], dim=-1)
    c2w = cameras.camtoworlds
    dirs = torch.einsum("cij,chwj->chwi", c2w[:, :3, :3], dirs_cam)
    if normalize:
        dirs = torch.nn.functional.normalize(dirs, dim=-1)
    origins = c2w[:, None, None, :3, 3].expand_as(dirs)
    return origins, dirs

"""Camera poses and the 25-value camera label of the 3D-aware GANs (EG3D, Aetherist).

A label is the flattened camera-to-world matrix (16 values, OpenCV axes: x right, y down, z forward)
followed by the flattened 3x3 intrinsics *normalised by the image size* (9 values: fx, fy, cx, cy in
units of the image side, so one label serves every render resolution). EG3D's dataset.json stores
exactly this; its generator conditions its mapping on it and renders through it.

Two ways to name a pose, both returning camera-to-world matrices:

- `create_camera_pose(elevation, azimuth, radius)`: degrees, y up; azimuth 0 puts the camera on +z
  looking at the target, positive azimuth turns it towards +x, positive elevation raises it.
- `eg3d_pose(yaw, pitch, radius, lookat)`: EG3D's LookAtPoseSampler with zero spread (radians; yaw is
  the angle around y with pi/2 at +z, pitch the polar angle from +y with pi/2 on the horizon, mapped
  through EG3D's arccos(1 - 2 v / pi) warp). `gaussian_eg3d_poses` draws yaw/pitch like its
  GaussianCameraPoseSampler.

`look_at` and `intrinsics_from_fov` are the shared ones of `utils.rendering.cameras`.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from utils.errors import UserError
from utils.rendering.cameras import Cameras, look_at

__all__ = ["EG3D_FOV_DEGREES", "normalized_intrinsics", "camera_label", "split_camera_label", "create_camera_pose",
           "create_orbit_trajectory", "eg3d_pose", "gaussian_eg3d_poses", "eg3d_angles", "label_cameras",
           "project_points", "rotate_labels"]

EG3D_FOV_DEGREES = 18.837
"""The field of view of EG3D's FFHQ and AFHQ cameras (its gen_samples.py)."""


def normalized_intrinsics(fov_degrees: float = EG3D_FOV_DEGREES, eg3d_rounding: bool = True) -> Tensor:
    """3x3 intrinsics in image-side units for a square image of field of view `fov_degrees` (measured along
    the diagonal, as EG3D's FOV_to_intrinsics: f = 1 / (tan(fov / 2) sqrt 2); with `eg3d_rounding` its
    constants pi = 3.14159 and sqrt 2 = 1.414, so labels equal EG3D's to the last bit)."""
    if not 0 < fov_degrees < 180:
        raise UserError(f"the field of view must lie in (0, 180) degrees, got {fov_degrees}")
    pi, sqrt2 = (3.14159, 1.414) if eg3d_rounding else (math.pi, math.sqrt(2))
    f = float(1 / (math.tan(fov_degrees * pi / 360) * sqrt2))
    return torch.tensor([[f, 0.0, 0.5], [0.0, f, 0.5], [0.0, 0.0, 1.0]])


def camera_label(cam2world: Tensor, intrinsics: Tensor | None = None) -> Tensor:
    """(B, 25) labels from camera-to-world matrices (B, 4, 4) (or (4, 4)) and normalised intrinsics
    ((3, 3) for all, or (B, 3, 3); default EG3D's FFHQ camera)."""
    c2w = cam2world.reshape(-1, 4, 4).float()
    K = normalized_intrinsics() if intrinsics is None else intrinsics.float()
    K = K.reshape(-1, 3, 3).to(c2w.device).expand(len(c2w), 3, 3)
    return torch.cat([c2w.reshape(-1, 16), K.reshape(-1, 9)], 1)


def split_camera_label(label: Tensor) -> tuple[Tensor, Tensor]:
    """(cam2world (B, 4, 4), normalised intrinsics (B, 3, 3)) of labels (B, 25)."""
    if label.ndim != 2 or label.shape[1] != 25:
        raise UserError(f"camera labels are (batch, 25): 16 values of the camera-to-world matrix and 9 of the "
                        f"intrinsics; got shape {tuple(label.shape)}")
    return label[:, :16].reshape(-1, 4, 4), label[:, 16:25].reshape(-1, 3, 3)


def create_camera_pose(elevation: float | Tensor, azimuth: float | Tensor, radius: float | Tensor = 2.7,
                       target: tuple[float, float, float] = (0.0, 0.0, 0.0),
                       up: tuple[float, float, float] = (0.0, 1.0, 0.0)) -> Tensor:
    """Camera-to-world matrix (4, 4) (or (B, 4, 4) for tensors of angles) of a camera `radius` from
    `target`, at `elevation` and `azimuth` degrees (see the module docstring), looking at the target."""
    el, az, r = (torch.as_tensor(v, dtype=torch.float64) for v in (elevation, azimuth, radius))
    if (r <= 0).any():
        raise UserError(f"the camera radius must be positive, got {radius}")
    if (el.abs() >= 90).any():
        raise UserError(f"the elevation must lie strictly between -90 and 90 degrees, got {elevation}")
    el, az = torch.deg2rad(el), torch.deg2rad(az)
    el, az, r = torch.broadcast_tensors(el, az, r)
    tgt = torch.tensor(target, dtype=torch.float64)
    eye = tgt + torch.stack([r * torch.cos(el) * torch.sin(az), r * torch.sin(el),
                             r * torch.cos(el) * torch.cos(az)], -1)
    c2w = look_at(eye, tgt.expand_as(eye), torch.tensor(up, dtype=torch.float64))
    return c2w.float()


def create_orbit_trajectory(radius: float = 2.7, num_views: int = 8, elevation: float = 0.0,
                            target: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Tensor:
    """`num_views` camera-to-world matrices (num_views, 4, 4) evenly around the y axis at `elevation`
    degrees, starting in front (+z)."""
    if num_views < 1:
        raise UserError(f"an orbit needs at least one view, got {num_views}")
    az = torch.arange(num_views, dtype=torch.float64) * (360.0 / num_views)
    return create_camera_pose(torch.full_like(az, float(elevation)), az, radius, target)


def eg3d_pose(yaw: float | Tensor, pitch: float | Tensor, radius: float = 2.7,
              lookat: tuple[float, float, float] | Tensor = (0.0, 0.0, 0.0)) -> Tensor:
    """EG3D's LookAtPoseSampler.sample(yaw, pitch, lookat, radius=radius) without spread: (B, 4, 4)."""
    h = torch.as_tensor(yaw, dtype=torch.float32).reshape(-1, 1)
    v = torch.as_tensor(pitch, dtype=torch.float32).reshape(-1, 1)
    h, v = torch.broadcast_tensors(h, v)
    v = torch.clamp(v, 1e-5, math.pi - 1e-5) / math.pi
    phi = torch.arccos(1 - 2 * v)
    origin = torch.cat([radius * torch.sin(phi) * torch.cos(math.pi - h), radius * torch.cos(phi),
                        radius * torch.sin(phi) * torch.sin(math.pi - h)], 1)
    target = torch.as_tensor(lookat, dtype=torch.float32).reshape(1, 3)
    forward = torch.nn.functional.normalize(target - origin, dim=-1)
    world_up = torch.tensor([0.0, 1.0, 0.0]).expand_as(forward)
    right = -torch.nn.functional.normalize(torch.linalg.cross(world_up, forward), dim=-1)
    down = torch.nn.functional.normalize(torch.linalg.cross(forward, right), dim=-1)
    c2w = torch.eye(4).repeat(len(origin), 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, down, forward, origin
    return c2w


def gaussian_eg3d_poses(n: int, yaw_mean: float = math.pi / 2, pitch_mean: float = math.pi / 2,
                        yaw_std: float = 0.0, pitch_std: float = 0.0, radius: float = 2.7,
                        lookat: tuple[float, float, float] = (0.0, 0.0, 0.0),
                        generator: torch.Generator | None = None) -> Tensor:
    """n poses with yaw and pitch drawn from normal distributions (EG3D's GaussianCameraPoseSampler, which
    looks at the origin; here at `lookat`)."""
    yaw = torch.randn(n, generator=generator) * yaw_std + yaw_mean
    pitch = torch.randn(n, generator=generator) * pitch_std + pitch_mean
    return eg3d_pose(yaw, pitch, radius, lookat)


def eg3d_angles(cam2world: Tensor, lookat: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> tuple[Tensor, Tensor, Tensor]:
    """(yaw, pitch, radius) of camera positions in EG3D's parametrisation (the inverse of `eg3d_pose`
    for cameras looking at `lookat`)."""
    p = cam2world.reshape(-1, 4, 4)[:, :3, 3].double() - torch.tensor(lookat, dtype=torch.float64)
    r = p.norm(dim=-1)
    phi = torch.arccos((p[:, 1] / r).clamp(-1, 1))
    pitch = (1 - torch.cos(phi)) / 2 * math.pi
    yaw = math.pi - torch.atan2(p[:, 2], p[:, 0])
    yaw = torch.remainder(yaw + math.pi, 2 * math.pi) - math.pi
    return yaw.float(), pitch.float(), r.float()


def label_cameras(label: Tensor, resolution: int) -> Cameras:
    """The shared `Cameras` (world-to-camera, pixel intrinsics) of labels (B, 25) at `resolution` pixels."""
    c2w, K = split_camera_label(label)
    Ks = K.clone()
    Ks[:, :2] *= resolution
    return Cameras(torch.linalg.inv(c2w), Ks, resolution, resolution)


def project_points(label: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
    """(uv in [0, 1] image units (B, N, 2), depth along the optical axis (B, N)) of world points (B, N, 3)."""
    c2w, K = split_camera_label(label)
    w2c = torch.linalg.inv(c2w)
    cam = (w2c[:, None, :3, :3] @ points[..., None]).squeeze(-1) + w2c[:, None, :3, 3]
    z = cam[..., 2]
    xy = cam[..., :2] / z[..., None].clamp_min(1e-8)
    uv = torch.stack([K[:, None, 0, 0] * xy[..., 0] + K[:, None, 0, 1] * xy[..., 1] + K[:, None, 0, 2],
                      K[:, None, 1, 1] * xy[..., 1] + K[:, None, 1, 2]], -1)
    return uv, z


def rotate_labels(label: Tensor, azimuth: float | Tensor) -> Tensor:
    """Labels (B, 25) with their cameras turned about the world y axis through the origin by `azimuth`
    degrees (one angle, or one per label), intrinsics kept: for cameras looking at the origin, the same
    view from `azimuth` degrees further round (positive towards +x, as `create_camera_pose`)."""
    c2w, K = split_camera_label(label)
    a = torch.deg2rad(torch.as_tensor(azimuth, dtype=c2w.dtype, device=c2w.device)).expand(len(c2w))
    R = torch.eye(4, dtype=c2w.dtype, device=c2w.device).repeat(len(c2w), 1, 1)
    R[:, 0, 0], R[:, 0, 2], R[:, 2, 0], R[:, 2, 2] = a.cos(), a.sin(), -a.sin(), a.cos()
    return torch.cat([(R @ c2w).flatten(1), K.flatten(1)], 1).to(label.dtype)

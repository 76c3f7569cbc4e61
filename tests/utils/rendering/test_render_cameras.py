"""Camera conventions: look-at, orbits, OpenGL -> OpenCV and rays."""
from __future__ import annotations

import math

import torch

from utils.rendering.cameras import camera_rays, look_at, opengl_to_opencv, orbit_cameras


def _project(cams, point):
    p = cams.viewmats[:, :3, :3] @ point + cams.viewmats[:, :3, 3]
    uv = (cams.Ks @ p[..., None]).squeeze(-1)
    return uv[:, :2] / uv[:, 2:], p[:, 2]


def test_orbit_cameras_look_at_target():
    target = torch.tensor([0.5, -0.2, 0.1])
    cams = orbit_cameras(7, 3.0, 40, 30, target=tuple(target.tolist()), elevation=math.radians(30))
    uv, depth = _project(cams, target)
    assert torch.allclose(uv, torch.tensor([20.0, 15.0]).expand(7, 2), atol=1e-3)
    assert torch.allclose(depth, torch.full((7,), 3.0), atol=1e-4)
    # the world up axis (z) points up in the image: y decreases
    uv_up, _ = _project(cams, target + torch.tensor([0.0, 0.0, 0.3]))
    assert (uv_up[:, 1] < 15.0).all()
    assert torch.allclose(cams.centers[:, 2], torch.full((7,), 0.1 + 3.0 * math.sin(math.radians(30))), atol=1e-4)


def test_opengl_to_opencv_flips_view_axes():
    c2w = look_at(torch.tensor([0.0, -4.0, 0.0], dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
                  torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    gl = opengl_to_opencv(c2w)
    # OpenGL looks down -z and has y up
    assert torch.allclose(-gl[:3, 2], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    assert torch.allclose(gl[:3, 1], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(opengl_to_opencv(gl), c2w)


def test_rays_through_principal_point():
    cams = orbit_cameras(2, 2.0, 9, 9)
    origins, dirs = camera_rays(cams)
    assert origins.shape == dirs.shape == (2, 9, 9, 3)
    centre = dirs[:, 4, 4]
    expected = torch.nn.functional.normalize(-cams.centers, dim=-1)
    assert torch.allclose(centre, expected, atol=1e-5)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(2, 9, 9), atol=1e-6)

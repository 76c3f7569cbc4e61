"""The camera system of the triplane GANs (utils/rendering/camera_labels.py) against EG3D's conventions."""
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from utils.errors import UserError
from utils.rendering.camera_labels import (camera_label, create_camera_pose, create_orbit_trajectory, eg3d_angles,
                                           eg3d_pose, normalized_intrinsics, project_points, rotate_labels,
                                           split_camera_label)

FIXTURE = Path(__file__).parents[2] / "fixtures" / "eg3d" / "eg3d_tiny.safetensors"


def test_eg3d_fixture_cameras_are_reproduced():
    f = load_file(FIXTURE)
    ours = camera_label(eg3d_pose(f["cam.yaw"], f["cam.pitch"], 2.7, f["cam.pivot"]), normalized_intrinsics(18.837))
    assert (ours - f["cam.c"]).abs().max() <= 1e-6


def test_create_camera_pose_round_trips_through_the_label():
    pose = create_camera_pose(elevation=30, azimuth=45, radius=2.0)
    assert torch.allclose(pose[:3, 3], torch.tensor([2 * math.cos(math.radians(30)) * math.sin(math.radians(45)),
                                                     2 * math.sin(math.radians(30)),
                                                     2 * math.cos(math.radians(30)) * math.cos(math.radians(45))]),
                          atol=1e-6)
    c2w, K = split_camera_label(camera_label(pose))
    assert torch.equal(c2w[0], pose) and torch.equal(K[0], normalized_intrinsics())
    # a rotation: orthonormal, right-handed, looking at the origin, image y pointing down the world's y
    R = pose[:3, :3]
    assert torch.allclose(R.T @ R, torch.eye(3), atol=1e-6) and torch.det(R) > 0
    assert torch.allclose(R[:, 2], -pose[:3, 3] / 2.0, atol=1e-6)
    assert R[1, 1] < 0


def test_ours_and_eg3d_conventions_convert():
    for el, az in [(0, 0), (20, 30), (-15, -60), (40, 170)]:
        pose = create_camera_pose(el, az, 2.7)
        yaw, pitch, radius = eg3d_angles(pose)
        assert torch.allclose(eg3d_pose(yaw, pitch, float(radius))[0], pose, atol=1e-5)
    assert torch.allclose(create_camera_pose(0, 0, 2.7), eg3d_pose(math.pi / 2, math.pi / 2, 2.7)[0], atol=1e-6)


def test_the_origin_projects_to_the_image_centre_for_every_orbit_pose():
    poses = create_orbit_trajectory(radius=2.5, num_views=12, elevation=25)
    uv, depth = project_points(camera_label(poses), torch.zeros(12, 1, 3))
    assert torch.allclose(uv, torch.full_like(uv, 0.5), atol=1e-6)
    assert torch.allclose(depth, torch.full_like(depth, 2.5), atol=1e-5)
    # and a point off the axis does not
    uv, _ = project_points(camera_label(poses), torch.tensor([0.3, 0.0, 0.0]).expand(12, 1, 3))
    assert (uv - 0.5).abs().max() > 0.01


def test_rotate_labels_turns_cameras_about_the_vertical_axis():
    el, az = torch.tensor([10.0, -5.0, 0.0]), torch.tensor([20.0, -7.0, 0.0])
    K = normalized_intrinsics(30.0)
    labels = camera_label(create_camera_pose(el, az, 2.7), K)
    turned = rotate_labels(labels, torch.tensor([15.0, 30.0, -90.0]))
    expected = camera_label(create_camera_pose(el, az + torch.tensor([15.0, 30.0, -90.0]), 2.7), K)
    assert (turned - expected).abs().max() <= 1e-5
    assert torch.equal(turned[:, 16:], labels[:, 16:])  # the intrinsics stay
    assert (rotate_labels(labels, 40.0) - labels).abs().max() > 0.1


def test_bad_cameras_are_refused_in_one_line():
    with pytest.raises(UserError, match="radius"):
        create_camera_pose(0, 0, -1)
    with pytest.raises(UserError, match="elevation"):
        create_camera_pose(95, 0, 2)
    with pytest.raises(UserError, match="25"):
        split_camera_label(torch.zeros(2, 16))
    with pytest.raises(UserError, match="field of view"):
        normalized_intrinsics(0)

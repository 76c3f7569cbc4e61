"""The built-in primitive renders: cameras look at the origin from radius 1.2, masks cover the shapes,
images are shaded only inside the masks, and the set is reproducible from its seed."""
from __future__ import annotations

import math

import torch

from models.generation_3d.get3d.primitives import camera_from_angles, render_primitives


def test_cameras_look_at_the_origin_from_the_given_angles():
    rot, elev = torch.tensor([0.0, 1.0, 2.5]), torch.tensor([math.pi / 2, 1.2, 0.6])
    mv = camera_from_angles(rot, elev)
    assert torch.allclose(mv[:, :3, :3] @ mv[:, :3, :3].transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-6)
    origin_cam = mv[:, :3, 3]  # where the world origin lands in camera space: straight ahead (-z) at 1.2
    assert torch.allclose(origin_cam, torch.tensor([0.0, 0.0, -1.2]).expand(3, 3), atol=1e-6)
    eye = -(mv[:, :3, :3].transpose(1, 2) @ mv[:, :3, 3:]).squeeze(-1)
    assert torch.allclose(torch.acos(eye[:, 1] / 1.2), elev, atol=1e-5)  # elevation = polar angle from +y
    assert (mv[:, 1, 1] > 0).all()  # world up stays up in the image


def test_primitive_renders_are_masked_shaded_and_seeded():
    data = render_primitives(3, 2, 16, seed=5, grid_res=8)
    imgs, masks = data["images"], data["masks"]
    assert imgs.shape == (3, 2, 3, 16, 16) and masks.shape == (3, 2, 1, 16, 16)
    cover = masks.mean(dim=(2, 3, 4))
    assert (cover > 0.05).all() and (cover < 0.8).all()
    assert (imgs[masks.expand_as(imgs) == 0] == 0).all() and (imgs[masks.expand_as(imgs) > 0] >= 0.25).all()
    again = render_primitives(3, 2, 16, seed=5, grid_res=8)
    assert torch.equal(again["images"], imgs) and again["kinds"] == data["kinds"]


def test_cameras_match_get3d_training_cameras():
    """tests/fixtures/get3d/make_golden_cameras.py: nv-tlabs' sample_camera('shapenet_car') matrices and angles."""
    from pathlib import Path

    from safetensors.torch import load_file

    gold = load_file(str(Path(__file__).resolve().parents[2] / "fixtures" / "get3d" / "golden_cameras.safetensors"))
    mv = camera_from_angles(gold["rotation"][:, 0], gold["elevation"][:, 0])
    assert torch.allclose(mv, gold["world2cam"], atol=1e-5)

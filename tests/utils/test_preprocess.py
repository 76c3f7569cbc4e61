"""Shared control-image preprocessors (utils/preprocess): Canny edges, depth maps (given or estimated), pose maps."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from utils.errors import UserError
from utils.preprocess import canny, depth, pose
from utils.preprocess.control import CONTROL_KINDS, control_image


def _square(size: int = 32) -> torch.Tensor:
    x = torch.full((1, 3, size, size), -1.0)
    x[..., size // 4:3 * size // 4, size // 4:3 * size // 4] = 1.0
    return x


def test_flux_uses_the_shared_detectors():
    from models.image_generation.flux import control as flux_control

    assert flux_control.canny_edges is canny.canny_edges and flux_control.estimate_depth is depth.estimate_depth


def test_canny_control_image_of_a_square():
    out = control_image("canny", (_square(32) + 1) / 2, (32, 32))
    assert out.shape == (1, 3, 32, 32) and set(out.unique().tolist()) == {0.0, 1.0}
    edges = out[0, 0]
    assert edges[12:20, 12:20].sum() == 0 and edges[:5].sum() == 0  # flat inside and outside
    assert edges[7:9, 10:22].sum() >= 12  # the top side of the square


def test_depth_map_given_as_a_grey_image_is_normalised():
    ramp = torch.linspace(0.2, 0.6, 16).view(1, 1, 1, 16).expand(1, 3, 16, 16)  # grey, [0, 1]
    out = control_image("depth", ramp, (16, 16))
    assert out.shape == (1, 3, 16, 16)
    assert torch.allclose(out[0, 0, 0], torch.linspace(0, 1, 16), atol=1e-5)  # min-max stretched, near = bright
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])


def test_depth_of_a_photo_needs_an_estimator_or_the_map():
    photo = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert not depth.looks_like_depth_map(photo * 2 - 1)
    with pytest.raises(UserError, match="no depth estimator is in the local cache"):
        control_image("depth", photo, (16, 16))


def test_depth_of_a_photo_through_a_tiny_estimator():
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    cfg = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37, image_size=32,
                    patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 8, 8],
                    fusion_hidden_size=16, head_in_index=-1, is_hybrid=False)
    torch.manual_seed(0)
    est = (DPTImageProcessor(size={"height": 32, "width": 32}, do_pad=False), DPTForDepthEstimation(cfg).eval())
    photo = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    out = control_image("depth", photo, (24, 24), estimator=est)
    assert out.shape == (1, 3, 24, 24) and abs(out.min().item()) < 1e-5 and abs(out.max().item() - 1) < 1e-5


def test_pose_map_is_used_as_given_and_photos_are_refused(tmp_path):
    skeleton = torch.zeros(1, 3, 32, 32)
    skeleton[0, 0, 4:28, 15:17] = 1.0  # a red limb
    skeleton[0, 1, 10:12, 6:26] = 1.0  # a green one
    out = control_image("pose", skeleton, (32, 32))
    assert torch.allclose(out, skeleton, atol=1e-6)
    Image.fromarray((torch.rand(32, 32, 3).numpy() * 255).astype("uint8")).save(tmp_path / "photo.png")
    with pytest.raises(UserError, match="looks like a photo"):
        control_image("pose", tmp_path / "photo.png", (32, 32))
    with pytest.raises(UserError, match="black everywhere"):
        pose.pose_map(torch.full((1, 3, 8, 8), -1.0))


def test_bad_control_inputs():
    assert CONTROL_KINDS == ("canny", "depth", "pose")
    with pytest.raises(UserError, match="unknown control kind 'cany'.*canny"):
        control_image("cany", _square(), (32, 32))
    with pytest.raises(UserError, match="needs an image"):
        control_image("canny", None, (32, 32))
    with pytest.raises(UserError, match="image file not found"):
        control_image("canny", "/nonexistent/edges.png", (32, 32))

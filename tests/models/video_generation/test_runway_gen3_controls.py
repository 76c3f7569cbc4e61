"""Performance transfer on the tiny preset: a driving video file's per-frame Canny / pose maps (utils/preprocess)
steer the ControlNet frame by frame; a driver with fewer frames than asked, a photo given as a pose video and a
ControlNet for another UNet are one clear line each."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from models.video_generation.runway_gen3 import controls
from models.video_generation.runway_gen3.pipeline import RunwayGen3Pipeline
from utils.errors import UserError
from utils.visualization.video import write_video


@pytest.fixture(scope="module")
def tiny():
    return RunwayGen3Pipeline.from_pretrained(preset="tiny", device="cpu")


def _driver(path, frames: int, step: int = 3, pose: bool = False) -> str:
    """A square moving right (on a gradient: a photo-like clip), or a coloured stick moving right on black."""
    out = []
    yy, xx = np.mgrid[0:32, 0:32]
    for k in range(frames):
        if pose:
            img = np.zeros((32, 32, 3), np.uint8)
            img[6:26, 4 + step * k:7 + step * k] = (255, 60, 0)
            img[14:17, 4 + step * k:14 + step * k] = (0, 200, 255)
        else:
            img = np.stack([xx * 4, yy * 4, np.full_like(xx, 60)], -1).astype(np.uint8)
            img[10:22, 2 + step * k:12 + step * k] = 240
        out.append(Image.fromarray(img))
    return str(write_video(out, path, fps=8))


def test_a_driving_video_steers_each_frame_through_the_controlnet(tiny, tmp_path):
    driver = _driver(tmp_path / "drive.mp4", 6)
    maps = controls.control_maps("canny", controls.load_frames(driver, (32, 32), 4, 8.0), (32, 32))
    assert maps.shape == (4, 3, 32, 32) and float(maps.max()) == 1.0
    assert (maps[1] - maps[0]).abs().max() > 0.5  # one edge map per frame: the square's edges move
    kw = dict(prompt="a dancer", num_frames=4, steps=3, seed=1, progress=False)
    plain = tiny(**kw).latents  # compared in latent space (the tiny random VAE flattens differences)
    driven = tiny(control="canny", control_video=driver, **kw).latents
    other = tiny(control="canny", control_video=_driver(tmp_path / "other.mp4", 6, step=-1), **kw).latents
    assert (driven - plain).abs().max() > 1e-2
    assert (driven - other).abs().max() > 1e-2  # another performance, another clip
    weak = tiny(control="canny", control_video=driver, control_scale=0.0, **kw).latents
    assert (weak - plain).abs().max() <= 1e-5  # scale 0: the ControlNet adds nothing


def test_pose_videos_are_taken_as_renderings(tiny, tmp_path):
    tiny.controlnet, tiny.control_kind = None, None
    out = tiny("a dancer", control="pose", control_video=_driver(tmp_path / "pose.mp4", 4, pose=True), num_frames=4,
               steps=2, seed=1, progress=False)
    assert out.pixels.shape == (1, 4, 3, 32, 32)
    with pytest.raises(UserError, match="not a pose rendering"):
        tiny("a dancer", control="pose", control_video=_driver(tmp_path / "photo.mp4", 4), num_frames=4, steps=2,
             progress=False)
    with pytest.raises(UserError, match="ControlNet is for pose"):
        tiny("a dancer", control="canny", control_video=_driver(tmp_path / "photo.mp4", 4), num_frames=4, steps=2,
             progress=False)
    tiny.controlnet, tiny.control_kind = None, None


def test_a_grey_depth_video_gives_one_depth_map_per_frame():
    ramp = torch.linspace(0, 1, 32)[None, None, None].expand(3, 3, 32, 32).clone()  # grey: near = bright
    ramp[1] = ramp[1].flip(-1)
    maps = controls.control_maps("depth", ramp * 2 - 1, (32, 32))
    assert maps.shape == (3, 3, 32, 32)
    assert maps[0, 0, 0, -1] > maps[0, 0, 0, 0] and maps[1, 0, 0, -1] < maps[1, 0, 0, 0]
    ready = controls.control_maps(None, ramp * 2 - 1, (16, 16))  # ready maps: only resized
    assert ready.shape == (3, 3, 16, 16) and float(ready.min()) >= 0.0


def test_a_control_video_with_fewer_frames_than_asked_is_one_line(tiny, tmp_path):
    with pytest.raises(UserError, match="has 2 frames, 4 were asked") as err:
        tiny("a dancer", control="canny", control_video=_driver(tmp_path / "short.mp4", 2), num_frames=4,
             progress=False)
    assert "\n" not in str(err.value)


def test_the_sdxl_path_takes_a_controlnet_per_frame_too(tmp_path):
    """tiny-sdxl: the ControlNet sees the clip's vector y (pooled text + sizes) per frame, like the UNet."""
    xl = RunwayGen3Pipeline.from_pretrained(preset="tiny-sdxl", device="cpu")
    kw = dict(prompt="a dancer", num_frames=4, steps=2, seed=1, progress=False)
    plain = xl(**kw).latents
    driven = xl(control="canny", control_video=_driver(tmp_path / "drive.mp4", 4), **kw).latents
    assert (driven - plain).abs().max() > 1e-2
    with pytest.raises(UserError, match="SD 1.5 vs SDXL"):
        RunwayGen3Pipeline.from_pretrained(preset="tiny-sdxl", device="cpu", controlnet=_sd15_controlnet())


def _sd15_controlnet():
    from models.image_generation.stable_diffusion.controlnet_pipeline import tiny_controlnet
    from models.image_generation.stable_diffusion.unet import UNetConfig

    return tiny_controlnet(UNetConfig.preset("tiny-sd15"), 2)


def test_a_controlnet_for_another_unet_is_refused(tiny):
    from models.image_generation.stable_diffusion.controlnet import ControlNet, ControlNetConfig
    from models.image_generation.stable_diffusion.unet import UNetConfig

    with pytest.raises(UserError, match="SD 1.5 vs SDXL"):
        tiny.load_controlnet(ControlNet(ControlNetConfig(UNetConfig.preset("tiny"), hint_block_channels=(8, 16))))

"""Camera motion of luma_dream clips, measured: a global Lucas-Kanade estimate of the mean optical flow
between consecutive frames (least squares of Ix dx + Iy dy + It = 0 over the whole frame, frames blurred
first). On the clips rendered from the built-in scene along the presets (training.py's data, known
cameras), the estimate has the sign and the size the camera geometry gives: a pan of a degrees over T
frames slides the picture by about fx * tan(a) / (T - 1) pixels a frame."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.video_generation.luma_dream.camera import global_flow


def test_estimator_on_a_shifted_pattern():
    g = torch.Generator().manual_seed(0)
    base = F.interpolate(torch.rand(1, 3, 12, 12, generator=g), size=(48, 48), mode="bicubic", align_corners=False)[0]
    frames = torch.stack([torch.roll(base, shifts=(i, -i), dims=(1, 2)) for i in range(5)])[..., 8:40, 8:40]
    dx, dy = global_flow(frames).tolist()
    assert dx == pytest.approx(-1.0, abs=0.25) and dy == pytest.approx(1.0, abs=0.25)


def test_rendered_preset_clips_move_as_their_cameras_say():
    from models.video_generation.luma_dream.training import SceneClips

    clips = SceneClips(4, 9, (32, 32), seed=0, presets=("pan-left", "pan-right", "tilt-up", "tilt-down"))
    fx = float(clips[0]["cameras"].Ks[0, 0, 0])
    expect = fx * math.tan(math.radians(20)) / 8  # about 1.9 px a frame
    flows = {it["preset"]: global_flow((it["video"] + 1) / 2) for it in clips.items}
    assert flows["pan-left"][0] == pytest.approx(expect, rel=0.35)  # content slides right
    assert flows["pan-right"][0] == pytest.approx(-expect, rel=0.35)
    assert flows["tilt-up"][1] > 0.5 and flows["tilt-down"][1] < -0.5  # content slides down / up
    assert abs(flows["pan-left"][1]) < 0.3 and abs(flows["tilt-up"][0]) < 0.3

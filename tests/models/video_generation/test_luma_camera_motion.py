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


def global_flow(frames: torch.Tensor, blur: float = 1.0) -> torch.Tensor:
    """frames (T, C, H, W) -> the mean (dx, dy) per frame step, in pixels (x right, y down)."""
    x = frames.double()
    k = torch.exp(-torch.arange(-2, 3, dtype=torch.float64) ** 2 / (2 * blur ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)
    steps = []
    for a, b in zip(x[:-1], x[1:]):
        m = (a + b) / 2
        ix = (m[:, 1:-1, 2:] - m[:, 1:-1, :-2]) / 2
        iy = (m[:, 2:, 1:-1] - m[:, :-2, 1:-1]) / 2
        it = (b - a)[:, 1:-1, 1:-1]
        A = torch.stack([torch.stack([(ix * ix).sum(), (ix * iy).sum()]), torch.stack([(ix * iy).sum(), (iy * iy).sum()])])
        r = -torch.stack([(ix * it).sum(), (iy * it).sum()])
        steps.append(torch.linalg.solve(A + 1e-9 * torch.eye(2, dtype=A.dtype), r))
    return torch.stack(steps).mean(0)


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

"""Turntable videos of 3D scenes: orbit cameras fitted to a capture, frames from any renderer."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from utils.rendering.cameras import Cameras, orbit_cameras

__all__ = ["orbit_from_cameras", "render_turntable", "write_turntable"]


def orbit_from_cameras(cameras: Cameras, n: int, width: int | None = None, height: int | None = None) -> Cameras:
    """`n` cameras circling the point the capture looks at, at the capture's mean distance,
    elevation and field of view, around its mean up direction."""
    c2w = cameras.camtoworlds.double()
    centers, forward, up = c2w[:, :3, 3], c2w[:, :3, 2], -c2w[:, :3, 1]
    # least-squares point nearest to every optical axis
    eye3 = torch.eye(3, dtype=torch.float64)
    proj = eye3 - forward[:, :, None] * forward[:, None, :]
    target = torch.linalg.lstsq(proj.sum(0), (proj @ centers[:, :, None]).sum(0)).solution.squeeze(-1)
    up_mean = torch.nn.functional.normalize(up.mean(0), dim=0)
    rel = centers - target
    radius = float(rel.norm(dim=-1).mean())
    elevation = float(torch.asin((rel @ up_mean / rel.norm(dim=-1)).clamp(-1, 1)).mean())
    width = width or cameras.width
    height = height or cameras.height
    fov_x = 2 * math.atan(0.5 * cameras.width / float(cameras.Ks[0, 0, 0]))
    return orbit_cameras(n, radius, width, height, fov_x=fov_x, elevation=elevation,
                         target=tuple(target.tolist()), up=tuple(up_mean.tolist()))


def render_turntable(render: Callable[[Cameras], torch.Tensor], cameras: Cameras, chunk: int = 4) -> list[Image.Image]:
    """Frames from `render(cameras) -> (C, H, W, 3)` in [0, 1], a few cameras at a time."""
    frames = []
    for i in range(0, len(cameras), chunk):
        with torch.no_grad():
            rgb = render(cameras[i:i + chunk]).clamp(0, 1).cpu().numpy()
        frames += [Image.fromarray((f * 255 + 0.5).astype(np.uint8)) for f in rgb]
    return frames


def write_turntable(render: Callable[[Cameras], torch.Tensor], cameras: Cameras, path: str | Path,
                    fps: float = 24.0) -> list[Image.Image]:
    """Render `cameras` and write them as a video (mp4 / webm / gif by suffix); returns the frames."""
    from utils.visualization.video import write_video

    frames = render_turntable(render, cameras)
    write_video(frames, path, fps)
    return frames

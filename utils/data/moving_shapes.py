"""The built-in synthetic video dataset: coloured shapes gliding and bouncing over a gradient background.

Every clip is a pure function of its seed (numpy's PCG64), so the dataset needs no files and no
network, and a training run that resumes sees the same clips. Each clip has 1-3 shapes (discs,
squares, rings) of random colour and size moving at constant speed, reflected at the borders; the
mean speed, scaled to 0..255, is the clip's `motion_bucket_id` (SVD's motion conditioning, which the
release computes from optical flow).

    clip = moving_shapes(seed=3, num_frames=8, size=(64, 64))   # (8, 3, 64, 64) in [0, 1]
    data = MovingShapes(num_clips=64, num_frames=8, size=(64, 64))
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

MAX_SPEED = 0.08
"""Fastest motion, in image widths per frame."""


def _clip_params(rng: np.random.Generator, num_shapes: int) -> list[dict]:
    shapes = []
    for _ in range(num_shapes):
        angle = rng.uniform(0, 2 * np.pi)
        speed = rng.uniform(0.15, 1.0) * MAX_SPEED
        shapes.append(dict(kind=int(rng.integers(0, 3)), radius=rng.uniform(0.08, 0.2), color=rng.uniform(0.2, 1.0, 3),
                           pos=rng.uniform(0.2, 0.8, 2), vel=speed * np.array([np.cos(angle), np.sin(angle)])))
    return shapes


def _bounce(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Positions after reflection at the walls lo and hi (a triangle wave)."""
    span = hi - lo
    q = np.mod(p - lo, 2 * span)
    return lo + np.where(q > span, 2 * span - q, q)


def moving_shapes(seed: int, num_frames: int = 8, size: tuple[int, int] = (64, 64)) -> tuple[torch.Tensor, float]:
    """(T, 3, H, W) float32 frames in [0, 1] of clip `seed`, and its motion bucket id (0..255)."""
    rng = np.random.default_rng(int(seed))
    h, w = size
    top, bottom = rng.uniform(0.0, 0.35, 3), rng.uniform(0.0, 0.35, 3)
    ys = np.linspace(0, 1, h)[:, None, None]
    background = top * (1 - ys) + bottom * ys  # (H, 1, 3)
    shapes = _clip_params(rng, int(rng.integers(1, 4)))
    yy, xx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
    aspect = w / h
    soft = 1.5 / min(h, w)  # a pixel and a half of anti-aliased edge
    frames = np.empty((num_frames, h, w, 3), dtype=np.float32)
    for t in range(num_frames):
        img = np.broadcast_to(background, (h, w, 3)).copy()
        for s in shapes:
            r = s["radius"]
            cx, cy = _bounce(s["pos"] + t * s["vel"], r, 1 - r)
            dx, dy = (xx - cx) * aspect, yy - cy
            if s["kind"] == 0:  # disc
                inside = r - np.hypot(dx, dy)
            elif s["kind"] == 1:  # square
                inside = r - np.maximum(np.abs(dx), np.abs(dy))
            else:  # ring
                inside = 0.35 * r - np.abs(np.hypot(dx, dy) - 0.65 * r)
            alpha = np.clip(inside / soft + 0.5, 0, 1)[..., None]
            img = img * (1 - alpha) + s["color"] * alpha
        frames[t] = img
    speed = float(np.mean([np.linalg.norm(s["vel"]) for s in shapes]))
    motion = round(255 * speed / MAX_SPEED)
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), float(motion)


class MovingShapes(Dataset):
    """`num_clips` clips of `moving_shapes`, clip i seeded with `seed + i`; items as video datasets give them:
    {"video": (T, 3, H, W) in [-1, 1], "fps": fps, "motion_bucket_id": m}."""

    def __init__(self, num_clips: int = 256, num_frames: int = 8, size: tuple[int, int] = (64, 64), fps: float = 8.0,
                 seed: int = 0):
        self.num_clips, self.num_frames, self.size, self.fps, self.seed = num_clips, num_frames, tuple(size), fps, seed

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, i: int) -> dict:
        frames, motion = moving_shapes(self.seed + int(i), self.num_frames, self.size)
        return {"video": frames * 2 - 1, "fps": float(self.fps), "motion_bucket_id": motion}


__all__ = ["MAX_SPEED", "MovingShapes", "moving_shapes"]

"""Fréchet Video Distance (Unterthiner et al. 2018), with the I3D of `utils.metrics.i3d`.

    from utils.metrics.fvd import fvd
    fvd("real_videos/", "generated_videos/", i3d="i3d_pretrained_400.pt")   # the CLI is evaluate/fvd.py

What is computed, exactly (VideoGPT's convention, which later papers reuse):

1. every clip: its first `num_frames` frames (16 by default), RGB in [0, 1];
2. the shorter side scaled to 224 (bilinear, align_corners=False), a 224 x 224 centre crop, [-1, 1];
3. the I3D's 400 Kinetics logits, averaged over the positions its last pool leaves;
4. mean and unbiased covariance in float64 of each set, and the Fréchet distance
   |mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)) (`utils.metrics.fid.frechet_distance`).

A source is a folder of videos, a list of video files, a (N, T, 3, H, W) tensor in [0, 1], or a
statistics file (.npz with `mu` and `sigma`, as `save_stats` writes).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch

from utils.errors import UserError
from utils.metrics.fid import frechet_distance, load_stats, save_stats

Source = Union[str, os.PathLike, Sequence, torch.Tensor]


def list_videos(folder: str | os.PathLike) -> list[Path]:
    """The video files (and frame folders) directly in `folder`, sorted."""
    from utils.data.video import ANIMATED_SUFFIXES, FRAME_SUFFIXES, VIDEO_FILE_SUFFIXES

    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"video folder not found: {root}")
    found = [p for p in sorted(root.iterdir())
             if (p.is_file() and p.suffix.lower() in VIDEO_FILE_SUFFIXES + ANIMATED_SUFFIXES)
             or (p.is_dir() and any(f.suffix.lower() in FRAME_SUFFIXES for f in p.iterdir()))]
    if not found:
        raise UserError(f"no videos in {root}: expected .mp4/.webm/.gif... files or folders of frames")
    return found


def _clips(source: Source, num_frames: int) -> torch.Tensor | list[Path]:
    if isinstance(source, torch.Tensor):
        if source.ndim != 5 or source.shape[1] < num_frames:
            raise UserError(f"a video tensor must be (N, T >= {num_frames}, 3, H, W) in [0, 1], got {tuple(source.shape)}")
        return source[:, :num_frames]
    if isinstance(source, (str, os.PathLike)):
        return list_videos(source)
    return [Path(p) for p in source]


def i3d_features(source: Source, model: Any, num_frames: int = 16, batch_size: int = 8,
                 size: int | None = None) -> np.ndarray:
    """(N, D) float64 I3D features of every clip of `source` (see the module docstring)."""
    from utils.data.video import read_video
    from utils.metrics.i3d import i3d_input

    clips = _clips(source, num_frames)
    device = next(model.parameters()).device
    feats = []
    n = len(clips)
    for i in range(0, n, batch_size):
        if isinstance(clips, torch.Tensor):
            batch = clips[i:i + batch_size].float()
        else:
            videos = [read_video(p, num_frames=num_frames).frames for p in clips[i:i + batch_size]]
            sizes = {tuple(v.shape[-2:]) for v in videos}
            if len(sizes) > 1:  # clips of different sizes: bring them to the first one's before stacking
                h, w = videos[0].shape[-2:]
                videos = [torch.nn.functional.interpolate(v, size=(h, w), mode="bilinear", align_corners=False)
                          for v in videos]
            batch = torch.stack(videos)
        with torch.no_grad():
            x = i3d_input(batch, size or 224).to(device)
            feats.append(model(x).double().cpu().numpy())
    return np.concatenate(feats)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise UserError(f"FVD needs at least 2 videos per set, got {len(f)}: add videos")
    return f.mean(0), np.cov(f, rowvar=False)


def fvd_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def _stats(source: Source, model: Any, num_frames: int, batch_size: int, size: int | None):
    if isinstance(source, (str, os.PathLike)) and str(source).endswith(".npz"):
        return load_stats(source)
    return feature_statistics(i3d_features(source, model, num_frames, batch_size, size))


def fvd(source1: Source, source2: Source, i3d: Any = None, num_frames: int = 16, batch_size: int = 8,
        device: str | torch.device | None = "cpu", size: int | None = None) -> float:
    """FVD between two sources; `i3d` is a loaded InceptionI3d or a weights file (see `load_i3d`).
    `size` changes the I3D input side from 224 (tests with a tiny I3D)."""
    from utils.metrics.i3d import load_i3d

    model = i3d if isinstance(i3d, torch.nn.Module) else load_i3d(i3d, device)
    mu1, s1 = _stats(source1, model, num_frames, batch_size, size)
    mu2, s2 = _stats(source2, model, num_frames, batch_size, size)
    return frechet_distance(mu1, s1, mu2, s2)


def shuffle_time(videos: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The same clips (N, T, ...) with their frames in a random order (each clip its own permutation):
    what FVD must tell apart from the original, frame statistics being equal."""
    perms = [torch.randperm(videos.shape[1], generator=generator) for _ in range(videos.shape[0])]
    return torch.stack([v[p] for v, p in zip(videos, perms)])


__all__ = ["feature_statistics", "fvd", "fvd_from_features", "i3d_features", "list_videos", "save_stats",
           "shuffle_time"]

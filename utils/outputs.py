"""Typed outputs of every pipeline. Each has `.save(path)` that writes atomically.

`path` with a file suffix writes one file; a path without a suffix is a folder that receives
one file per item (images, frames, 3D parts).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

from utils.errors import UserError
from utils.io import atomic_path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".gif", ".webm"}


@dataclass
class ImageOutput:
    """Generated images, and the tensors they were made from."""

    images: list[Image.Image]
    """The images as PIL (8-bit); empty when a diffusion pipeline was asked for latents only."""
    pixels: torch.Tensor | None = None
    """(B, C, H, W) float32 on the CPU, in [0, 1]: the images before 8-bit rounding."""
    latents: torch.Tensor | None = None
    """What the images were made from: a GAN's z, or a diffusion model's final latents (B, C, h, w)."""
    labels: torch.Tensor | None = None
    """(B,) class labels of a class-conditional model."""
    indices: torch.Tensor | None = None
    """(B, h, w) codebook indices of a vector-quantised model."""
    names: list[str] | None = None
    """The input each image was made from, for image-to-image models."""

    @classmethod
    def from_tensor(cls, images: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0),
                    **fields: Any) -> "ImageOutput":
        """Images (B, C, H, W) in `value_range` -> PIL images and `pixels` in [0, 1] (clipped)."""
        from utils.visualization.grid import to_pil

        lo, hi = value_range
        pixels = ((images.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
        return cls(to_pil(pixels, value_range=(0.0, 1.0)), pixels=pixels, **fields)

    def __len__(self) -> int:
        return len(self.images)

    def grid(self, nrow: int | None = None) -> Image.Image:
        from utils.visualization.grid import make_grid

        return make_grid(self.images, nrow=nrow)

    def save(self, path: str | Path, nrow: int | None = None) -> list[Path]:
        """An image suffix writes one file (a grid when there are several images); else a folder."""
        path = Path(path)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            image = self.images[0] if len(self.images) == 1 else self.grid(nrow)
            with atomic_path(path) as tmp:
                image.save(tmp)
            return [path]
        if path.suffix:
            raise UserError(f"cannot save images as '{path.suffix}': use one of "
                            f"{', '.join(sorted(IMAGE_SUFFIXES))}, or a folder name without suffix")
        written = []
        for i, image in enumerate(self.images):
            target = path / f"{i:04d}.png"
            with atomic_path(target) as tmp:
                image.save(tmp)
            written.append(target)
        return written


@dataclass
class VideoOutput:
    """Frames of one or more videos at `fps`. `frames[v][t]` is frame t of video v."""

    frames: list[list[Image.Image]]
    """frames[v][t]: frame t of video v."""
    fps: float = 8.0
    """Frames per second of playback."""

    def save(self, path: str | Path) -> list[Path]:
        """`.mp4`/`.webm`/`.gif` writes the first video (or `name_{v}` for several); else frame folders."""
        from utils.visualization.video import write_video

        path = Path(path)
        written = []
        if path.suffix.lower() in VIDEO_SUFFIXES:
            for v, frames in enumerate(self.frames):
                target = path if len(self.frames) == 1 else path.with_name(f"{path.stem}_{v}{path.suffix}")
                write_video(frames, target, self.fps)
                written.append(target)
            return written
        if path.suffix:
            raise UserError(f"cannot save a video as '{path.suffix}': use .mp4, .webm, .gif or a folder")
        for v, frames in enumerate(self.frames):
            for t, frame in enumerate(frames):
                target = path / f"{v:02d}" / f"{t:04d}.png"
                with atomic_path(target) as tmp:
                    frame.save(tmp)
                written.append(target)
        return written


@dataclass
class Output3D:
    """A 3D result: any of splats, a point cloud, a mesh, voxels, and rendered views.

    `writers` maps a file suffix (".ply", ".obj", ".npy", ".mp4") to a function that writes the
    main artefact in that format; `.save("x.ply")` uses it. A folder receives every part.
    """

    renders: list[Image.Image] = field(default_factory=list)
    points: np.ndarray | None = None
    colors: np.ndarray | None = None
    voxels: np.ndarray | None = None
    writers: dict[str, Callable[[Path], None]] = field(default_factory=dict)
    fps: float = 24.0
    cameras: Any = None
    """The cameras of `renders`, in order."""

    def save(self, path: str | Path) -> list[Path]:
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix:
            if suffix in self.writers:
                with atomic_path(path) as tmp:
                    self.writers[suffix](tmp)
                return [path]
            if suffix in VIDEO_SUFFIXES and self.renders:
                return VideoOutput([self.renders], fps=self.fps).save(path)
            if suffix in IMAGE_SUFFIXES and self.renders:
                return ImageOutput(self.renders).save(path)
            raise UserError(f"this 3D result cannot be saved as '{suffix}': use one of "
                            f"{', '.join(sorted(set(self.writers) | ({'.mp4', '.png'} if self.renders else set())))}"
                            " or a folder")
        written = []
        for suffix, writer in self.writers.items():
            target = path / f"result{suffix}"
            with atomic_path(target) as tmp:
                writer(tmp)
            written.append(target)
        if self.voxels is not None and ".npy" not in self.writers:
            target = path / "voxels.npy"
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, self.voxels)
            written.append(target)
        if self.renders:
            written += ImageOutput(self.renders).save(path / "renders")
        return written

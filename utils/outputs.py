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


def check_generated(values: Any, what: str = "images", flat: bool = True) -> None:
    """Refuse a generated result that is NaN/Inf or (`flat`) one value everywhere (a blank file to be).

    `values`: a tensor or array of the whole result (raw model output or pixels). Broken weights, a
    diverged training or an overflowing dtype give such results.
    """
    import torch

    t = values.detach() if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    if t.numel() == 0:
        return
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise UserError(f"the model produced NaN or infinite {what}: its weights are broken or the dtype "
                        "overflows; try --dtype fp32, or other weights")
    if flat and t.numel() > 1 and bool((t == t.flatten()[0]).all()):
        raise UserError(f"the model produced {what} of one flat value ({float(t.flatten()[0]):g} everywhere): its "
                        "weights are broken (e.g. all zero), so nothing was written: try other weights")


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

        check_generated(images, flat=False)
        lo, hi = value_range
        pixels = ((images.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
        return cls(to_pil(pixels, value_range=(0.0, 1.0)), pixels=pixels, **fields)

    def __len__(self) -> int:
        return len(self.images)

    def grid(self, nrow: int | None = None) -> Image.Image:
        from utils.visualization.grid import make_grid

        return make_grid(self.images, nrow=nrow)

    def save(self, path: str | Path, nrow: int | None = None) -> list[Path]:
        """An image suffix writes one file (a grid when there are several images); else a folder.

        Generated `pixels` that are NaN or one flat value are refused (`check_generated`) instead of
        written as blank files."""
        path = Path(path)
        if not self.images:
            raise UserError("there are no images to save (the call returned latents only)")
        if self.pixels is not None:
            check_generated(self.pixels)
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
    pixels: torch.Tensor | None = None
    """(B, T, C, H, W) float32 on the CPU, in [0, 1]: the frames before 8-bit rounding."""
    latents: torch.Tensor | None = None
    """What the frames were decoded from: a diffusion pipeline's final latents (B, T, C, h, w)."""

    def __len__(self) -> int:
        return len(self.frames)

    def preview(self, columns: int | None = None) -> Image.Image:
        """A grid of the frames: one row per video (up to 8 frames), or each video tiled and stacked."""
        from utils.visualization.grid import make_grid
        from utils.visualization.video import frame_strip

        if len(self.frames) == 1 or any(len(v) > 8 for v in self.frames):
            strips = [frame_strip(v, columns) for v in self.frames]
            return strips[0] if len(strips) == 1 else make_grid(strips, nrow=1, padding=4)
        return make_grid([f for v in self.frames for f in v], nrow=columns or max(len(v) for v in self.frames))

    def save(self, path: str | Path) -> list[Path]:
        """`.mp4` (H.264, yuv420p), `.webm`, `.gif` or `.webp` writes the video (`name_{v}` for several);
        `.png`/`.jpg` a preview grid of the frames; a path without suffix a folder of PNG frames
        (`path/0000.png`..., or `path/{v:02d}/0000.png` for several videos). Every file is written atomically."""
        from utils.visualization.video import VIDEO_FILE_SUFFIXES, write_video

        path = Path(path)
        suffix = path.suffix.lower()
        if not self.frames or any(not v for v in self.frames):
            raise UserError("this video output has no frames to save")
        if suffix and suffix not in VIDEO_FILE_SUFFIXES and suffix not in IMAGE_SUFFIXES:
            raise UserError(f"cannot save a video as '{path.suffix}': use one of {', '.join(VIDEO_FILE_SUFFIXES)}, "
                            f"an image suffix for a preview grid, or a folder name without suffix")
        if suffix in VIDEO_FILE_SUFFIXES:
            written = []
            for v, frames in enumerate(self.frames):
                target = path if len(self.frames) == 1 else path.with_name(f"{path.stem}_{v}{path.suffix}")
                written.append(write_video(frames, target, self.fps))
            return written
        try:
            if suffix:
                image = self.preview()
                with atomic_path(path) as tmp:
                    image.save(tmp)
                return [path]
            written = []
            for v, frames in enumerate(self.frames):
                folder = path if len(self.frames) == 1 else path / f"{v:02d}"
                for t, frame in enumerate(frames):
                    target = folder / f"{t:04d}.png"
                    with atomic_path(target) as tmp:
                        frame.save(tmp)
                    written.append(target)
            return written
        except OSError as err:
            raise UserError(f"cannot write {path} ({' '.join(str(err).split())[:120]}): check that its folder can be "
                            "written, or choose another path") from None


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

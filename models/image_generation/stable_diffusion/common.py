"""Pieces the SDXL and SD3 pipelines share: inputs (prompts, sizes, images, masks), the partial
schedules of the base/refiner hand-off, and turning decoded pixels into an ImageOutput."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from models.outputs import ImageOutput
from utils.errors import UserError

ImageInput = Any  # a path, a PIL image, or a (B, 3, H, W) tensor in [0, 1]


def as_prompts(prompt: str | Sequence[str] | None, num_images: int) -> list[str]:
    """One prompt per image: a single prompt is repeated, a list must match `num_images` (or sets it)."""
    if num_images < 1:
        raise UserError(f"num_images must be at least 1, got {num_images}")
    if prompt is None:
        return [""] * num_images
    if isinstance(prompt, str):
        return [prompt] * num_images
    prompts = [str(p) for p in prompt]
    if len(prompts) == 1:
        return prompts * num_images
    if num_images not in (1, len(prompts)):
        raise UserError(f"got {len(prompts)} prompts for {num_images} images: give one prompt or one per image")
    return prompts


def check_size(height: int, width: int, multiple: int, what: str) -> None:
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise UserError(f"{what} generates sizes that are multiples of {multiple} pixels, got {height}x{width}: "
                        f"round to e.g. {max(multiple, round(height / multiple) * multiple)}x"
                        f"{max(multiple, round(width / multiple) * multiple)}")


def load_image(image: ImageInput, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] from a path, PIL image or tensor in [0, 1]; resized to `size` (h, w)."""
    if isinstance(image, torch.Tensor):
        x = image.float()
        if x.ndim == 3:
            x = x[None]
        x = x * 2 - 1
    else:
        from PIL import Image

        if isinstance(image, (str, os.PathLike)):
            if not Path(image).is_file():
                raise UserError(f"image file not found: {image}")
            image = Image.open(image)
        arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
        x = torch.from_numpy(arr).permute(2, 0, 1)[None]
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)
    return x


def load_mask(mask: ImageInput, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, h, w) in {0, 1} at latent size `size`: 1 (white) = repaint, 0 = keep."""
    if isinstance(mask, torch.Tensor):
        m = mask.float()
        m = m[None] if m.ndim == 2 else m
        m = m[None] if m.ndim == 3 else m
        m = m[:, :1]
    else:
        from PIL import Image

        if isinstance(mask, (str, os.PathLike)):
            if not Path(mask).is_file():
                raise UserError(f"mask file not found: {mask}")
            mask = Image.open(mask)
        m = torch.from_numpy(np.asarray(mask.convert("L"), dtype=np.float32) / 255.0)[None, None]
    m = F.interpolate(m, size=size, mode="nearest")
    return (m > 0.5).float()


def cutoff_steps(timesteps: torch.Tensor, fraction: float, num_train: int = 1000) -> int:
    """How many steps of a schedule lie at or above the noise level `fraction` of the way through
    training time (the base model's share with `denoising_end`)."""
    cutoff = int(round(num_train - fraction * num_train))
    return int((timesteps >= cutoff).sum().item())


def start_index(timesteps: torch.Tensor, fraction: float, order: int = 1, num_train: int = 1000) -> int:
    """Where a run resumes with `denoising_start`: the first step below the cutoff (two-stage solvers
    start on a full step)."""
    cutoff = int(round(num_train - fraction * num_train))
    n = int((timesteps < cutoff).sum().item())
    if order == 2 and n % 2 == 0:
        n += 1
    return len(timesteps) - n


class StopAfter:
    """An `interrupt` for `sample` that stops after `n` model calls (and honours a user interrupt)."""

    def __init__(self, n: int | None, user: Any = None):
        self.n, self.user, self.calls = n, user, 0

    def count(self, info) -> None:
        self.calls = info.num_calls

    def __call__(self) -> bool:
        if self.n is not None and self.calls >= self.n:
            return True
        if self.user is None:
            return False
        return self.user.is_set() if hasattr(self.user, "is_set") else bool(self.user())


def to_output(pixels: torch.Tensor | None, latents: torch.Tensor, extras: dict | None = None) -> ImageOutput:
    """Pixels in [-1, 1] -> PIL images; the [0, 1] tensor and the latents ride along in `extras`."""
    from PIL import Image

    extras = dict(extras or {})
    extras["latents"] = latents
    if pixels is None:
        return ImageOutput(images=[], extras=extras)
    unit = (pixels.float() / 2 + 0.5).clamp(0, 1).cpu()
    extras["pixels"] = unit
    arr = (unit.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return ImageOutput(images=[Image.fromarray(a) for a in arr], extras=extras)


__all__ = ["ImageInput", "StopAfter", "as_prompts", "check_size", "cutoff_steps", "load_image", "load_mask",
           "start_index", "to_output"]

"""Images and masks given by users (a path, a PIL image or a tensor) as model-ready tensors."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from utils.errors import UserError

ImageInput = Any  # a path, a PIL image, or a (B, 3, H, W) tensor in [0, 1]


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


__all__ = ["ImageInput", "load_image", "load_mask"]

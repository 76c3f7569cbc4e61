"""Image tensors to PIL images and image grids."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from utils.io import atomic_path


def to_pil(images: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> list[Image.Image]:
    """(B, C, H, W) float tensor in `value_range` to a list of RGB (or L) PIL images."""
    if images.ndim == 3:
        images = images[None]
    lo, hi = value_range
    x = ((images.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    x = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = []
    for arr in x:
        if arr.shape[-1] == 1:
            out.append(Image.fromarray(arr[..., 0], mode="L"))
        else:
            out.append(Image.fromarray(arr[..., :3], mode="RGB"))
    return out


def make_grid(images: Sequence[Image.Image], nrow: int | None = None, padding: int = 2,
              background: int = 0) -> Image.Image:
    """Tile images (all the same size) into one image, `nrow` per row (about square by default)."""
    if not images:
        raise ValueError("make_grid needs at least one image")
    n = len(images)
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    w, h = images[0].size
    mode = "RGB" if any(im.mode != "L" for im in images) else "L"
    grid = Image.new(mode, (nrow * w + (nrow + 1) * padding, rows * h + (rows + 1) * padding),
                     color=background if mode == "L" else (background,) * 3)
    for i, im in enumerate(images):
        r, c = divmod(i, nrow)
        grid.paste(im.convert(mode), (padding + c * (w + padding), padding + r * (h + padding)))
    return grid


def save_grid(images: Sequence[Image.Image] | torch.Tensor, path: str | Path, nrow: int | None = None,
              value_range: tuple[float, float] = (-1.0, 1.0)) -> Path:
    """Write a grid of images (PIL list or (B, C, H, W) tensor) atomically to `path`."""
    if isinstance(images, torch.Tensor):
        images = to_pil(images, value_range)
    grid = make_grid(list(images), nrow=nrow)
    with atomic_path(path) as tmp:
        grid.save(tmp)
    return Path(path)


def grid_array(images: torch.Tensor, nrow: int | None = None,
               value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """(H, W, 3) uint8 grid, the form TensorBoard's add_image(dataformats='HWC') takes."""
    return np.asarray(make_grid(to_pil(images, value_range), nrow=nrow).convert("RGB"))

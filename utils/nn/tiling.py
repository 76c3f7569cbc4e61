"""Tiled inference for image-to-image networks whose memory grows with the image (super-resolution).

`tiled_map(fn, x, scale, tile, pad)` cuts the input into `tile` x `tile` pieces, runs `fn` on each
with `pad` pixels of real context on every side (less at the borders), and pastes the centre of each
output, scaled by `scale`, into place: the tile scheme of Real-ESRGAN's inference. With `pad` at
least the network's receptive radius the result equals the untiled one to float rounding; with less,
only pixels near the seams differ.
"""
from __future__ import annotations

from typing import Callable

import torch


def tile_starts(length: int, tile: int) -> list[int]:
    """Start offsets of the tiles covering `length` (the last one may be shorter)."""
    return list(range(0, length, tile))


def tiled_map(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, scale: int, tile: int,
              pad: int = 10) -> torch.Tensor:
    """`fn(x)` computed tile by tile; `fn` maps (B, C, h, w) to (B, C', scale h, scale w)."""
    if tile <= 0:
        raise ValueError(f"tile must be positive, got {tile}")
    b, _, h, w = x.shape
    if h <= tile and w <= tile:
        return fn(x)
    out: torch.Tensor | None = None
    for top in tile_starts(h, tile):
        for left in tile_starts(w, tile):
            bottom, right = min(top + tile, h), min(left + tile, w)
            # the tile with up to `pad` pixels of context on every side
            t0, l0 = max(top - pad, 0), max(left - pad, 0)
            t1, l1 = min(bottom + pad, h), min(right + pad, w)
            y = fn(x[:, :, t0:t1, l0:l1])
            if out is None:
                out = y.new_zeros((b, y.shape[1], h * scale, w * scale))
            crop = y[:, :, (top - t0) * scale:(bottom - t0) * scale, (left - l0) * scale:(right - l0) * scale]
            out[:, :, top * scale:bottom * scale, left * scale:right * scale] = crop
    assert out is not None
    return out


def seam_mask(h: int, w: int, tile: int, scale: int, width: int) -> torch.Tensor:
    """(h scale, w scale) bool mask of the output pixels within `width` output pixels of a tile seam."""
    mask = torch.zeros(h * scale, w * scale, dtype=torch.bool)
    for start in tile_starts(h, tile)[1:]:
        s = start * scale
        mask[max(s - width, 0):s + width, :] = True
    for start in tile_starts(w, tile)[1:]:
        s = start * scale
        mask[:, max(s - width, 0):s + width] = True
    return mask

"""FLUX's sampling helpers: latents as 2x2-patch tokens, their position ids, Fill's mask channels, the
sigma schedule and the img2img start.

    latents (B, 16, h, w) ── pack_latents ─> tokens (B, h/2 * w/2, 64), ids (h/2 * w/2, 3) = (0, row, col)
    pixel mask (B, 1, H, W) ── pack_mask_fill ─> (B, h/2 * w/2, 4 * 8²) channels of FLUX.1 Fill
"""
from __future__ import annotations

import numpy as np
import torch

from utils.nn import grid_ids

LATENT_CHANNELS = 16
"""Channels of the FLUX autoencoder's latents (64 per packed token)."""


def pack_latents(z: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) latents -> (B, h/2 * w/2, 4C) tokens, each a 2x2 patch (channel-major, then row, col)."""
    b, c, h, w = z.shape
    return z.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of `pack_latents` for latents of h x w (latent pixels)."""
    b, _, d = x.shape
    c = d // 4
    return x.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def image_ids(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Position ids (h/2 * w/2, 3) of the packed tokens of h x w latents: (0, row, col)."""
    return grid_ids(h // 2, w // 2, device=device)


def text_ids(batch: int, length: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Position ids (B, L, 3) of the text tokens: all zeros (RoPE leaves them unrotated)."""
    return torch.zeros(batch, length, 3, device=device)


def pack_mask_fill(mask: torch.Tensor, downscale: int) -> torch.Tensor:
    """Fill's mask channels: (B, 1, H, W) pixel mask -> each latent pixel's downscale² mask values as
    channels (B, d², H/d, W/d), then 2x2-packed to (B, L, 4 d²)."""
    b, _, hh, ww = mask.shape
    d = downscale
    m = mask[:, 0].view(b, hh // d, d, ww // d, d).permute(0, 2, 4, 1, 3).reshape(b, d * d, hh // d, ww // d)
    return pack_latents(m)


def sigmas(steps: int) -> np.ndarray:
    """The unshifted schedule of `steps` steps, sigma 1 down to 1/steps (the scheduler shifts it for dev)."""
    return torch.linspace(1.0, 1.0 / steps, steps).numpy()


def img2img_start(steps: int, strength: float) -> int:
    """Steps skipped by an img2img run: int(n - n * strength), without rounding n * strength first (as
    BFL and diffusers do)."""
    return int(max(steps - min(steps * strength, steps), 0))


__all__ = ["LATENT_CHANNELS", "image_ids", "img2img_start", "pack_latents", "pack_mask_fill", "sigmas", "text_ids",
           "unpack_latents"]

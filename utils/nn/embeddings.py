"""Sinusoidal timestep embeddings (each model keeps the small MLP after them, under its release's key names).

The zoo meets two orders of the same features: [sin, cos] (DDPM, diffusers' default) and
[cos, sin] (`flip_sin_to_cos=True`: SD, SDXL, SD3, FLUX). Frequencies are
exp(-ln(max_period) * i / (half - downscale_freq_shift)) for i in [0, half).
FLUX's official code multiplies t by 1000 before embedding: `time_factor=1000` does that first,
so the rounding matches its release.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, flip_sin_to_cos: bool = False, downscale_freq_shift: float = 1.0,
                       scale: float = 1.0, max_period: float = 10000.0, time_factor: float = 1.0) -> torch.Tensor:
    """(N,) timesteps (may be fractional) -> (N, dim) float32 sinusoidal features.

    `time_factor` multiplies t before the frequencies (FLUX: 1000 with t in [0, 1]);
    `scale` multiplies the phase after (diffusers' `scale`). An odd `dim` is zero-padded.
    """
    if t.ndim == 0:
        t = t[None]
    if t.ndim != 1:
        raise ValueError(f"timesteps must be a 1-D tensor, got shape {tuple(t.shape)}")
    half = dim // 2
    idx = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(max_period) * idx / (half - downscale_freq_shift))
    if time_factor != 1.0:
        t = t * time_factor
    phase = t[:, None].float() * freqs[None, :]
    if scale != 1.0:
        phase = phase * scale
    first, second = (torch.cos(phase), torch.sin(phase)) if flip_sin_to_cos else (torch.sin(phase), torch.cos(phase))
    emb = torch.cat([first, second], dim=-1)
    if dim % 2:
        emb = nn.functional.pad(emb, (0, 1))
    return emb


__all__ = ["timestep_embedding"]

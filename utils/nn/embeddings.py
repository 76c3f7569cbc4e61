"""Sinusoidal timestep embeddings and the small MLP that usually follows them.

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


class Timesteps(nn.Module):
    """Module form of `timestep_embedding` (no parameters)."""

    def __init__(self, dim: int, flip_sin_to_cos: bool = True, downscale_freq_shift: float = 0.0, scale: float = 1.0,
                 max_period: float = 10000.0, time_factor: float = 1.0):
        super().__init__()
        self.dim, self.flip_sin_to_cos, self.downscale_freq_shift = dim, flip_sin_to_cos, downscale_freq_shift
        self.scale, self.max_period, self.time_factor = scale, max_period, time_factor

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return timestep_embedding(t, self.dim, self.flip_sin_to_cos, self.downscale_freq_shift, self.scale,
                                  self.max_period, self.time_factor)


class TimestepMLP(nn.Module):
    """Linear -> SiLU -> Linear on sinusoidal features (diffusers' `TimestepEmbedding` key names)."""

    def __init__(self, in_dim: int, dim: int, out_dim: int | None = None, bias: bool = True):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim, bias=bias)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, out_dim or dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


__all__ = ["TimestepMLP", "Timesteps", "timestep_embedding"]

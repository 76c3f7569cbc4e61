"""Point-E's sampling: the released Gaussian diffusion (1024 steps; cosine schedule for the base
models, linear for the upsampler; epsilon prediction), driven by the Karras et al. 2022 Heun
sampler with churn, as `point_e.diffusion.k_diffusion.karras_sample` does.

The Karras sampler runs on sigmas; each denoiser call maps sigma to the model's training step
(linear interpolation in alpha_bar, then truncated to an integer, as released), scales the input
by 1 / sqrt(sigma^2 + 1), predicts epsilon and turns it into a clipped x0. Point channels are
scaled to [-1, 1] for the diffusion (xyz x 2, rgb / 127.5 - 1) and unscaled at the end.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

CHANNEL_SCALES = np.array([2.0, 2.0, 2.0, 0.007843137255, 0.007843137255, 0.007843137255])
CHANNEL_BIASES = np.array([0.0, 0.0, 0.0, -1.0, -1.0, -1.0])

# per released model: (schedule, sigma_min, sigma_max, s_churn) of point_e's PointCloudSampler
SAMPLING = {"base": ("cosine", 1e-3, 120.0, 3.0), "upsample": ("linear", 1e-3, 160.0, 0.0)}


def betas(schedule: str, steps: int = 1024) -> np.ndarray:
    """The released beta schedules (float64)."""
    if schedule == "linear":
        scale = 1000 / steps
        return np.linspace(scale * 0.0001, scale * 0.02, steps, dtype=np.float64)
    if schedule == "cosine":
        def bar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        return np.array([min(1 - bar((i + 1) / steps) / bar(i / steps), 0.999) for i in range(steps)])
    raise ValueError(f"unknown Point-E schedule {schedule!r}")


class GaussianDiffusion:
    """alpha_bar of one schedule and the sigma -> step map of the Karras wrapper."""

    def __init__(self, schedule: str = "cosine", steps: int = 1024):
        self.alphas_cumprod = np.cumprod(1.0 - betas(schedule, steps))
        self.num_timesteps = steps

    def sigma_to_t(self, sigma: np.float32) -> int:
        acp = self.alphas_cumprod
        a = np.float32(1.0) / (np.float32(sigma) ** 2 + np.float32(1.0))
        if a > acp[0]:
            return 0
        if a <= acp[-1]:
            return self.num_timesteps - 1
        return int(np.interp(float(a), acp[::-1], np.arange(self.num_timesteps, dtype=np.float64)[::-1]))

    def pred_xstart(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        acp = torch.from_numpy(self.alphas_cumprod)[t.cpu()]
        a = torch.sqrt(1.0 / acp).float().to(x.device).view(-1, *([1] * (x.ndim - 1)))
        b = torch.sqrt(1.0 / acp - 1).float().to(x.device).view(-1, *([1] * (x.ndim - 1)))
        return a * x - b * eps


def scale_channels(x: torch.Tensor) -> torch.Tensor:
    shape = [1, -1, *([1] * (x.ndim - 2))]
    return x * torch.from_numpy(CHANNEL_SCALES).to(x).view(shape) + torch.from_numpy(CHANNEL_BIASES).to(x).view(shape)


def unscale_channels(x: torch.Tensor) -> torch.Tensor:
    shape = [1, -1, *([1] * (x.ndim - 2))]
    return (x - torch.from_numpy(CHANNEL_BIASES).to(x).view(shape)) / torch.from_numpy(CHANNEL_SCALES).to(x).view(shape)


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    ramp = torch.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return torch.cat([(hi + ramp * (lo - hi)) ** rho, torch.zeros(1)])


@torch.no_grad()
def karras_sample(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], diffusion: GaussianDiffusion,
                  shape: tuple[int, ...], steps: int = 64, sigma_min: float = 1e-3, sigma_max: float = 120.0,
                  s_churn: float = 3.0, guidance_scale: float = 3.0, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu", progress: Callable | None = None) -> torch.Tensor:
    """Sample `shape` (B, C, N) in the scaled channel space, then unscale it.

    `model(x, t)` takes the batch twice over when guided (conditional half first) and returns
    (2B or B, 2C, N); channels C: are the variance, unused here. Noise comes from `generator`:
    the start (x sigma_max) and one draw per step (the churn noise), as released."""
    sigmas = karras_sigmas(steps, sigma_min, sigma_max).to(device)
    x = torch.randn(shape, generator=generator).to(device) * sigma_max
    guided = guidance_scale not in (0.0, 1.0)
    channels = shape[1]

    def denoise(x_t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        inp = torch.cat([x_t, x_t]) if guided else x_t
        sig = torch.cat([sigma, sigma]) if guided else sigma
        t = torch.tensor([diffusion.sigma_to_t(s) for s in sig.cpu().numpy()], dtype=torch.long, device=x_t.device)
        c_in = (1.0 / (sig ** 2 + 1) ** 0.5).view(-1, *([1] * (x_t.ndim - 1)))
        scaled = inp * c_in
        eps = model(scaled, t)[:, :channels]
        x0 = diffusion.pred_xstart(scaled, t, eps).clamp(-1, 1)
        if guided:
            cond, uncond = x0.chunk(2)
            x0 = uncond + guidance_scale * (cond - uncond)
        return x0

    ones = x.new_ones(x.shape[0])
    indices = range(len(sigmas) - 1)
    for i in (progress(indices) if progress else indices):
        gamma = min(s_churn / (len(sigmas) - 1), 2 ** 0.5 - 1)
        eps = torch.randn(x.shape, generator=generator).to(x)
        sigma_hat = sigmas[i] * (gamma + 1)
        if gamma > 0:
            x = x + eps * (sigma_hat ** 2 - sigmas[i] ** 2) ** 0.5
        denoised = denoise(x, sigma_hat * ones)
        d = (x - denoised) / sigma_hat
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x2 = x + d * dt
            d2 = (x2 - denoise(x2, sigmas[i + 1] * ones)) / sigmas[i + 1]
            x = x + (d + d2) / 2 * dt
    return unscale_channels(x)

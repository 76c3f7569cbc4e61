"""Noise and compression of Real-ESRGAN's degradation model, on (B, C, H, W) images in [0, 1].

- Gaussian (read) noise: x + sigma / 255 * n, n ~ N(0, 1) per pixel and channel ("colour") or one map shared
  by the channels ("grey").
- Poisson (shot) noise: the image rounded to 8 bits, v = 2^ceil(log2(#distinct values)) levels,
  x' = Poisson(x v) / v, so Var(x' - x) = x / v: the noise grows with intensity; `scale` multiplies it.
  Grey Poisson noise is drawn on the ITU-R 601 luma and shared by the channels.
- JPEG: an encode / decode round trip through libjpeg (PIL) at an integer quality.
Each `random_*` draws its parameters per image from a torch.Generator (sigma or scale uniform in its
range, grey with probability gray_prob), as the official `random_add_*_noise_pt` functions do.
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch

LUMA = (0.299, 0.587, 0.114)
"""RGB -> grey weights (torchvision's rgb_to_grayscale, which the official grey Poisson noise uses)."""


def _uniform(lo: float, hi: float, gen: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen, dtype=torch.float64))


def gaussian_noise(x: torch.Tensor, sigma: float, grey: bool, gen: torch.Generator) -> torch.Tensor:
    """The noise (not the noisy image) for one image (1, C, H, W); sigma on the 0..255 scale."""
    shape = (x.shape[0], 1 if grey else x.shape[1], *x.shape[-2:])
    n = torch.randn(shape, generator=gen, dtype=torch.float32).to(x.device, x.dtype)
    return (n * (sigma / 255.0)).expand_as(x)


def _to_8bit(x: torch.Tensor) -> torch.Tensor:
    return (x * 255.0).round().clamp(0, 255) / 255.0


def poisson_noise(x: torch.Tensor, scale: float, grey: bool, gen: torch.Generator) -> torch.Tensor:
    """The shot noise for one image (1, C, H, W), times `scale`."""
    if grey and x.shape[1] == 3:
        w = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        src = _to_8bit((x * w).sum(1, keepdim=True))
    else:
        src = _to_8bit(x)
    levels = 2.0 ** math.ceil(math.log2(max(1, len(torch.unique(src)))))
    counts = torch.poisson((src * levels).double().cpu(), generator=gen).to(x.device, x.dtype)
    return ((counts / levels - src) * scale).expand_as(x)


def random_noise(x: torch.Tensor, gaussian_prob: float, sigma_range: tuple[float, float],
                 poisson_scale_range: tuple[float, float], gray_prob: float, gen: torch.Generator) -> torch.Tensor:
    """With probability gaussian_prob Gaussian noise, else Poisson noise; grey with probability gray_prob;
    the result clamped to [0, 1]. One image (1, C, H, W)."""
    if _uniform(0, 1, gen) < gaussian_prob:
        sigma = _uniform(*sigma_range, gen)
        noise = gaussian_noise(x, sigma, _uniform(0, 1, gen) < gray_prob, gen)
    else:
        scale = _uniform(*poisson_scale_range, gen)
        noise = poisson_noise(x, scale, _uniform(0, 1, gen) < gray_prob, gen)
    return (x + noise).clamp(0, 1)


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """A JPEG encode / decode round trip of each image of (B, C, H, W) in [0, 1] (C = 1 or 3)."""
    from PIL import Image

    out = []
    for img in x.detach().clamp(0, 1):
        arr = (img.permute(1, 2, 0).cpu().float() * 255).round().to(torch.uint8).numpy()
        buf = io.BytesIO()
        Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(buf, format="JPEG", quality=int(quality))
        back = torch.from_numpy(np.array(Image.open(buf))).float() / 255
        out.append((back[..., None] if back.ndim == 2 else back).permute(2, 0, 1))
    return torch.stack(out).to(x.device, x.dtype)


def random_jpeg(x: torch.Tensor, quality_range: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """JPEG at a quality drawn uniformly in the range (rounded to an integer, libjpeg's unit)."""
    return jpeg(x.clamp(0, 1), round(_uniform(*quality_range, gen)))

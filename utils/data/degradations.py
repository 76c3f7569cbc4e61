"""Low-resolution training inputs made on the fly from high-resolution crops (Real-ESRGAN's degradation model).

`degrade(hr, scale, generator, order=2)` on (B, C, H, W) in [0, 1] returns (B, C, H // scale, W // scale):
- order 2, Real-ESRGAN's second-order model (Wang et al. 2021, sec. 3.1; the official
  train_realesrgan_x4plus.yml / train_realesrnet_x4plus.yml settings in REAL_ESRGAN):
  1. blur with a drawn kernel (`degradation_kernels.random_kernel`: iso / aniso / generalized / plateau
     Gaussians or a sinc), a random resize (up, down or keep with probabilities 0.2 / 0.7 / 0.1, factor in
     [0.15, 1.5], area / bilinear / bicubic), Gaussian noise (p 0.5, sigma 1..30) or Poisson noise (scale
     0.05..3), grey with p 0.4, JPEG of quality 30..95;
  2. with p 0.8 a second blur (sigma 0.2..1.5), a resize to (H / scale) * f with f in [0.3, 1.2]
     (0.3 / 0.4 / 0.3), noise (sigma 1..25, Poisson 0.05..2.5), then in either order (even odds) JPEG 30..95
     and [the resize to H / scale + the final sinc filter (p 0.8, else identity)];
  3. rounding to 8 bits.
- order 1: the first stage only, then the resize to H / scale (a classical one-round model).
- order 0: bicubic downsampling (SRGAN's and ESRGAN's training pairs).
Every random draw comes from `generator`, so the same seed makes the same pairs. Unlike the official GPU
code, which shares the resize, noise type and JPEG quality across a batch and mixes batches with a pool of
180 pairs, every image here draws all of its own parameters (the diversity the pool is there to give).
JPEG is libjpeg through PIL at an integer quality (the official code uses a reimplementation, DiffJPEG).

`usm_sharp` is the unsharp mask Real-ESRGAN applies to the HR target (and, before degrading, to the input).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from utils.data.degradation_kernels import (FIRST_KERNEL, FINAL_SINC_PROB, SECOND_KERNEL, KernelSettings, filter2d,
                                            random_final_sinc, random_kernel)
from utils.data.degradation_noise import random_jpeg, random_noise

MODES = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class StageSettings:
    """One degradation stage (the official option names in brackets, '2' for the second stage)."""

    kernel: KernelSettings
    """The blur kernel's draw (blur_sigma, betag_range, betap_range, kernel_prob, sinc_prob)."""
    blur_prob: float
    """Probability of blurring at all (1 for the first stage, second_blur_prob 0.8 for the second)."""
    resize_prob: tuple[float, float, float]
    """Probabilities of resizing up, down, or keeping the size (resize_prob)."""
    resize_range: tuple[float, float]
    """Range of the resize factor: (low, 1) when down, (1, high) when up (resize_range)."""
    gaussian_noise_prob: float
    """Probability of Gaussian rather than Poisson noise (gaussian_noise_prob)."""
    noise_range: tuple[float, float]
    """Gaussian noise sigma on the 0..255 scale (noise_range)."""
    poisson_scale_range: tuple[float, float]
    """Poisson noise scale (poisson_scale_range)."""
    gray_noise_prob: float
    """Probability that the noise is grey (gray_noise_prob)."""
    jpeg_range: tuple[float, float]
    """JPEG quality (jpeg_range)."""


@dataclass(frozen=True)
class DegradationSettings:
    """The whole second-order model."""

    first: StageSettings
    """The first stage."""
    second: StageSettings
    """The second stage."""
    final_sinc_prob: float
    """Probability of the sinc filter after the final resize."""


REAL_ESRGAN = DegradationSettings(
    first=StageSettings(FIRST_KERNEL, 1.0, (0.2, 0.7, 0.1), (0.15, 1.5), 0.5, (1, 30), (0.05, 3.0), 0.4, (30, 95)),
    second=StageSettings(SECOND_KERNEL, 0.8, (0.3, 0.4, 0.3), (0.3, 1.2), 0.5, (1, 25), (0.05, 2.5), 0.4, (30, 95)),
    final_sinc_prob=FINAL_SINC_PROB,
)
"""train_realesrgan_x4plus.yml (and train_realesrnet_x4plus.yml, which shares every degradation option)."""


def _uniform(lo: float, hi: float, gen: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen, dtype=torch.float64))


def _mode(gen: torch.Generator) -> str:
    return MODES[int(torch.randint(len(MODES), (), generator=gen))]


def _factor(s: StageSettings, gen: torch.Generator) -> float:
    kind = int(torch.multinomial(torch.tensor(s.resize_prob, dtype=torch.float64), 1, generator=gen))
    return (_uniform(1.0, s.resize_range[1], gen), _uniform(s.resize_range[0], 1.0, gen), 1.0)[kind]


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """F.interpolate as the official code calls it (no antialiasing), at least 1 x 1."""
    size = (max(1, int(size[0])), max(1, int(size[1])))
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def _noise_and_jpeg(x: torch.Tensor, s: StageSettings, gen: torch.Generator, jpeg: bool = True) -> torch.Tensor:
    x = random_noise(x, s.gaussian_noise_prob, s.noise_range, s.poisson_scale_range, s.gray_noise_prob, gen)
    return random_jpeg(x, s.jpeg_range, gen) if jpeg else x


def _degrade_one(x: torch.Tensor, scale: int, gen: torch.Generator, order: int, s: DegradationSettings) -> torch.Tensor:
    h, w = x.shape[-2:]
    target = (h // scale, w // scale)
    # kernels are drawn first, as the official dataset does before the model applies them
    k1, k2, sinc = random_kernel(s.first.kernel, gen), random_kernel(s.second.kernel, gen), random_final_sinc(gen, s.final_sinc_prob)
    out = filter2d(x, k1)
    f = _factor(s.first, gen)
    out = resize(out, (math.floor(h * f), math.floor(w * f)), _mode(gen))
    out = _noise_and_jpeg(out, s.first, gen)
    if order == 1:
        return resize(out, target, _mode(gen))
    if _uniform(0, 1, gen) < s.second.blur_prob:
        out = filter2d(out, k2)
    f = _factor(s.second, gen)
    out = resize(out, (int(h / scale * f), int(w / scale * f)), _mode(gen))
    out = _noise_and_jpeg(out, s.second, gen, jpeg=False)
    if _uniform(0, 1, gen) < 0.5:
        out = filter2d(resize(out, target, _mode(gen)), sinc)
        out = random_jpeg(out, s.second.jpeg_range, gen)
    else:
        out = random_jpeg(out, s.second.jpeg_range, gen)
        out = filter2d(resize(out, target, _mode(gen)), sinc)
    return out


def degrade(hr: torch.Tensor, scale: int, generator: torch.Generator, order: int = 2,
            settings: DegradationSettings = REAL_ESRGAN) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> (B, C, H // scale, W // scale) in [0, 1], rounded to 8 bits."""
    if order not in (0, 1, 2):
        raise ValueError(f"degradation order is 0 (bicubic), 1 or 2 (Real-ESRGAN), got {order}")
    h, w = hr.shape[-2:]
    if order == 0:
        out = F.interpolate(hr, size=(h // scale, w // scale), mode="bicubic", align_corners=False, antialias=True)
    else:
        out = torch.cat([_degrade_one(img[None], scale, generator, order, settings) for img in hr])
    return _round_8bit(out)


def _round_8bit(x: torch.Tensor) -> torch.Tensor:
    return (x * 255.0).round().clamp(0, 255) / 255.0


def opencv_gaussian_kernel(size: int, sigma: float = 0.0) -> torch.Tensor:
    """The 2-D Gaussian OpenCV's getGaussianKernel makes (sigma <= 0: 0.3 ((size - 1) / 2 - 1) + 0.8)."""
    if sigma <= 0:
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-t * t / (2 * sigma * sigma))
    g = g / g.sum()
    return torch.outer(g, g)


def usm_sharp(x: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10) -> torch.Tensor:
    """Unsharp masking (BasicSR's USMSharp defaults): blur B with a radius x radius (made odd) Gaussian,
    sharp = clip(x + weight (x - B), 0, 1) where |x - B| * 255 > threshold, softened by blurring that mask."""
    size = radius + 1 if radius % 2 == 0 else radius
    kernel = opencv_gaussian_kernel(size)
    residual = x - filter2d(x, kernel)
    mask = filter2d((residual.abs() * 255 > threshold).to(x.dtype), kernel)
    sharp = (x + weight * residual).clamp(0, 1)
    return mask * sharp + (1 - mask) * x

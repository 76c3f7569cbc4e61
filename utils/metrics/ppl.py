"""Perceptual path length (Karras et al. 2019, StyleGAN, section 3.2 and appendix).

For pairs of latents, the LPIPS-VGG distance between the images generated at interpolation
positions t and t + eps, divided by eps^2, with eps = 1e-4:

- space 'z': spherical interpolation (slerp) between z0, z1 ~ N(0, I), generator G(z);
- space 'w': linear interpolation (lerp) between w0 = f(z0), w1 = f(z1), synthesis g(w);
- sampling 'full': t ~ U(0, 1); 'end': t = 0 (path endpoints only);
- crop (optional): StyleGAN's FFHQ face crop, rows [3H/8, 7H/8) and columns [2W/8, 6W/8);
  images larger than 256 px are then average-pooled down by an integer factor, as StyleGAN does;
- the distances below the 1st and above the 99th percentile are dropped before the mean
  (`np.percentile(..., interpolation='lower' / 'higher')`, as StyleGAN's metric code).

Generators take a (B, latent_dim) tensor and return images in [-1, 1], (B, 3, H, W).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from utils.errors import UserError

__all__ = ["slerp", "lerp", "perceptual_path_length", "filter_percentiles", "stylegan_crop"]

EPSILON = 1e-4


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of the directions of a and b (result has unit norm, as StyleGAN's)."""
    a, b = _normalize(a), _normalize(b)
    t = t.reshape(-1, *([1] * (a.ndim - 1)))
    d = (a * b).sum(-1, keepdim=True).clamp(-1, 1)
    p = t * torch.acos(d)
    c = _normalize(b - d * a)
    return _normalize(a * torch.cos(p) + c * torch.sin(p))


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.reshape(-1, *([1] * (a.ndim - 1)))
    return a + (b - a) * t


def stylegan_crop(images: torch.Tensor) -> torch.Tensor:
    """The FFHQ face crop of StyleGAN's PPL: rows 3/8..7/8 and columns 2/8..6/8 of the image."""
    c = images.shape[2] // 8
    return images[:, :, c * 3: c * 7, c * 2: c * 6]


def _downsample_256(images: torch.Tensor) -> torch.Tensor:
    if images.shape[2] > 256:
        factor = images.shape[2] // 256
        images = F.avg_pool2d(images, factor, factor)
    return images


def filter_percentiles(distances: np.ndarray, low: float = 1, high: float = 99) -> np.ndarray:
    """Keep the distances within [P_low, P_high] (StyleGAN: 'lower' / 'higher' interpolation)."""
    d = np.asarray(distances, np.float64)
    lo = np.percentile(d, low, method="lower")
    hi = np.percentile(d, high, method="higher")
    return d[(d >= lo) & (d <= hi)]


@torch.no_grad()
def perceptual_path_length(generator: Callable[[torch.Tensor], torch.Tensor], latent_dim: int,
                           num_samples: int = 100_000, space: str = "z",
                           mapping: Callable[[torch.Tensor], torch.Tensor] | None = None,
                           epsilon: float = EPSILON, sampling: str = "full", crop: bool = False,
                           batch_size: int = 16, lpips: torch.nn.Module | None = None, seed: int = 0,
                           device: str | torch.device = "cpu", progress: bool = True) -> tuple[float, np.ndarray]:
    """(PPL, all distances before filtering). In space 'w', `generator` is the synthesis network and
    `mapping` maps z to w. `lpips` defaults to the pretrained LPIPS-VGG."""
    from tqdm.auto import tqdm

    if space not in ("z", "w"):
        raise UserError(f"PPL space must be 'z' or 'w', got '{space}'")
    if sampling not in ("full", "end"):
        raise UserError(f"PPL sampling must be 'full' or 'end', got '{sampling}'")
    if space == "w" and mapping is None:
        raise UserError("PPL in w space needs the mapping network (mapping=...)")
    if lpips is None:
        from utils.metrics.lpips import LPIPS

        lpips = LPIPS.from_pretrained("vgg", device=device)
    gen = torch.Generator().manual_seed(seed)
    out = []
    with tqdm(total=num_samples, desc="PPL", disable=not progress, leave=False) as bar:
        while sum(len(o) for o in out) < num_samples:
            n = min(batch_size, num_samples - sum(len(o) for o in out))
            z = torch.randn(2 * n, latent_dim, generator=gen)
            t = torch.rand(n, generator=gen) * (sampling == "full")
            z = z.to(device)
            t = t.to(device)
            a, b = z[:n], z[n:]
            if space == "z":
                lat = torch.cat([slerp(a, b, t), slerp(a, b, t + epsilon)])
            else:
                wa, wb = mapping(a), mapping(b)
                lat = torch.cat([lerp(wa, wb, t), lerp(wa, wb, t + epsilon)])
            images = generator(lat).float()
            if crop:
                images = stylegan_crop(images)
            images = _downsample_256(images)
            if images.shape[1] == 1:
                images = images.expand(-1, 3, -1, -1)
            d = lpips(images[:n], images[n:]) / epsilon ** 2
            out.append(d.double().cpu().numpy())
            bar.update(n)
    distances = np.concatenate(out)
    return float(filter_percentiles(distances).mean()), distances

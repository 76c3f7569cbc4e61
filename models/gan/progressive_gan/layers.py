"""The building blocks the Progressive GAN paper introduced (Karras et al. 2017, section 4).

- Equalized learning rate: weights are drawn from N(0, 1) and scaled at run time by He's constant
  c = sqrt(2 / fan_in), so Adam's scale-invariant updates move every layer at the same speed.
  As in pytorch_GAN_zoo (whose checkpoints load here), the layer's whole output, bias included,
  is multiplied by c; the wrapped layer is kept as `.module` so the keys match (`*.module.weight`).
- Pixel norm: each pixel's feature vector divided by its RMS over the channels.
- Minibatch standard deviation: the std of each feature over a group of samples, averaged to one
  number per group and appended as an extra constant channel.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def he_constant(weight_shape: torch.Size | tuple[int, ...]) -> float:
    """sqrt(2 / fan_in) with fan_in = in_channels * kernel area (or in_features)."""
    return math.sqrt(2.0 / math.prod(weight_shape[1:]))


class EqualizedConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0):
        super().__init__()
        self.module = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)
        self.scale = he_constant(self.module.weight.shape)
        if not self.module.weight.is_meta:
            nn.init.normal_(self.module.weight)
            nn.init.zeros_(self.module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x) * self.scale


class EqualizedLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.module = nn.Linear(in_features, out_features)
        self.scale = he_constant(self.module.weight.shape)
        if not self.module.weight.is_meta:
            nn.init.normal_(self.module.weight)
            nn.init.zeros_(self.module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x) * self.scale


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x / sqrt(mean over channels of x^2 + eps): unit RMS per pixel (dim 1)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4, eps: float = 1e-8) -> torch.Tensor:
    """Append one channel holding, for each sample, the mean std of its group's features.

    Groups are consecutive samples of `group_size` (the whole batch when it does not divide);
    the std is the unbiased one over the group, as in pytorch_GAN_zoo, whose weights load here.
    A group of one has no spread: the channel is 0.
    """
    b, c, h, w = x.shape
    g = min(b, group_size)
    if b % g:
        g = b
    if g == 1:
        return torch.cat([x, x.new_zeros(b, 1, h, w)], dim=1)
    std = (x.reshape(b // g, g, c, h, w).var(dim=1, unbiased=True) + eps).sqrt()  # (groups, c, h, w)
    per_group = std.flatten(1).mean(dim=1)  # (groups,)
    channel = per_group.repeat_interleave(g).reshape(b, 1, 1, 1).expand(b, 1, h, w)
    return torch.cat([x, channel.to(x.dtype)], dim=1)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour doubling (each pixel becomes a 2x2 block)."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2)

"""Progressive GAN generator and discriminator (Karras et al. 2017), with every scale built up front.

Module names follow pytorch_GAN_zoo's GNet/DNet, so its checkpoints load without renaming:
generator `formatLayer`, `groupScale0`, `scaleLayers.<s>.<0|1>`, `toRGBLayers.<s>`; discriminator
`fromRGBLayers.<s>`, `scaleLayers.<s>.<0|1>`, `groupScaleZero.<0|1>`, `decisionLayer`.

Growing is a matter of which scales run: `forward(..., depth=d, alpha=a)` uses scales 0..d and
fades the newest one in. `alpha` follows the paper: 0 gives the previous scale's output (upsampled),
1 the new scale's. (pytorch_GAN_zoo's own `alpha` runs the other way, 1 -> 0.) By default a
network runs at its full depth with alpha 1, which is how a trained model generates.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.gan.progressive_gan.config import ProGANConfig
from models.gan.progressive_gan.layers import (EqualizedConv2d, EqualizedLinear, downsample2x, minibatch_stddev,
                                               pixel_norm, upsample2x)


def _stage(config: ProGANConfig, depth: int | None, alpha: float | None) -> tuple[int, float]:
    d = config.num_scales - 1 if depth is None else int(depth)
    if not 0 <= d < config.num_scales:
        raise ValueError(f"depth must lie in 0..{config.num_scales - 1}, got {d}")
    return d, 1.0 if alpha is None else float(alpha)


class Generator(nn.Module):
    """z (B, latent_dim) -> image (B, C, 4*2^d, 4*2^d); no output activation (as in the release)."""

    def __init__(self, config: ProGANConfig):
        super().__init__()
        self.config = config
        d0 = config.depths[0]
        self.formatLayer = EqualizedLinear(config.latent_dim, 16 * d0)
        self.groupScale0 = nn.ModuleList([EqualizedConv2d(d0, d0, 3, padding=1)])
        self.scaleLayers = nn.ModuleList(
            nn.ModuleList([EqualizedConv2d(prev, new, 3, padding=1), EqualizedConv2d(new, new, 3, padding=1)])
            for prev, new in zip(config.depths[:-1], config.depths[1:]))
        self.toRGBLayers = nn.ModuleList(EqualizedConv2d(d, config.channels, 1) for d in config.depths)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,)

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(x, self.config.leaky_slope)
        return pixel_norm(x) if self.config.pixel_norm else x

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, depth: int | None = None,
                alpha: float | None = None) -> torch.Tensor:
        if labels is not None:
            raise ValueError("this Progressive GAN is unconditional: it takes no labels")
        d, a = _stage(self.config, depth, alpha)
        x = pixel_norm(z) if self.config.pixel_norm else z
        x = self._act(self.formatLayer(x.flatten(1)).reshape(z.shape[0], self.config.depths[0], 4, 4))
        for conv in self.groupScale0:
            x = self._act(conv(x))
        previous = x
        for s in range(d):
            previous = x
            x = upsample2x(x)
            for conv in self.scaleLayers[s]:
                x = self._act(conv(x))
        out = self.toRGBLayers[d](x)
        if d > 0 and a < 1:
            # fade-in: blend with the previous scale's image, upsampled to the new size
            out = a * out + (1 - a) * upsample2x(self.toRGBLayers[d - 1](previous))
        return out


class Discriminator(nn.Module):
    """image (B, C, 4*2^d, 4*2^d) -> one critic value per image."""

    def __init__(self, config: ProGANConfig):
        super().__init__()
        self.config = config
        d0 = config.depths[0]
        self.fromRGBLayers = nn.ModuleList(EqualizedConv2d(config.channels, d, 1) for d in config.depths)
        # scale s+1 maps its own depth down to scale s's depth before the 2x average pooling
        self.scaleLayers = nn.ModuleList(
            nn.ModuleList([EqualizedConv2d(new, new, 3, padding=1), EqualizedConv2d(new, prev, 3, padding=1)])
            for prev, new in zip(config.depths[:-1], config.depths[1:]))
        self.groupScaleZero = nn.ModuleList([EqualizedConv2d(d0 + int(config.minibatch_std), d0, 3, padding=1),
                                             EqualizedLinear(16 * d0, d0)])
        self.decisionLayer = EqualizedLinear(d0, 1)

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.config.leaky_slope)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None, depth: int | None = None,
                alpha: float | None = None) -> torch.Tensor:
        d, a = _stage(self.config, depth, alpha)
        h = self._act(self.fromRGBLayers[d](x))
        for s in reversed(range(d)):
            for conv in self.scaleLayers[s]:
                h = self._act(conv(h))
            h = downsample2x(h)
            if s == d - 1 and a < 1:
                # fade-in: blend with the previous scale's input path fed the downsampled image
                h = a * h + (1 - a) * self._act(self.fromRGBLayers[d - 1](downsample2x(x)))
        if self.config.minibatch_std:
            h = minibatch_stddev(h, self.config.minibatch_group)
        h = self._act(self.groupScaleZero[0](h))
        h = self._act(self.groupScaleZero[1](h.flatten(1)))
        return self.decisionLayer(h).flatten()

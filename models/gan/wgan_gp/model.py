"""WGAN-GP (Gulrajani et al. 2017): a DCGAN-like generator and a critic without batch norm.

The gradient penalty is a per-sample constraint (the gradient norm of each interpolate), which
batch norm would break by mixing samples; the critic therefore has no normalisation or a layer
norm (GroupNorm with one group: statistics over C, H, W of each sample, per-channel affine).
"""
from __future__ import annotations

import torch
from torch import nn

from models.gan.dcgan.model import Generator as DCGANGenerator
from models.gan.wgan_gp.config import WGANGPConfig


class Generator(DCGANGenerator):
    """The DCGAN generator (transposed convs, batch norm, ReLU, tanh), with `main.<i>` keys."""

    def __init__(self, config: WGANGPConfig):
        super().__init__(config)  # type: ignore[arg-type]  # same field names as DCGANConfig


def _norm(kind: str, channels: int) -> list[nn.Module]:
    if kind == "none":
        return []
    if kind == "layer":
        return [nn.GroupNorm(1, channels)]
    raise ValueError(f"critic_norm must be 'none' or 'layer', got {kind!r}")


class Critic(nn.Module):
    """image -> one unbounded score per image (no sigmoid: the output estimates a Wasserstein potential)."""

    def __init__(self, config: WGANGPConfig):
        super().__init__()
        self.config = config
        width = config.ndf
        layers: list[nn.Module] = [nn.Conv2d(config.channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        for _ in range(config.num_upsamplings - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1), *_norm(config.critic_norm, width * 2), nn.LeakyReLU(0.2)]
            width *= 2
        layers += [nn.Conv2d(width, 1, 4, 1, 0)]  # the last 4x4 map -> one value
        self.main = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.main(x).flatten()

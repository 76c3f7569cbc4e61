"""The original GAN (Goodfellow et al. 2014) with multilayer perceptrons for G and D.

Leaky ReLU replaces the paper's maxout units (a common, simpler choice that trains as well
on small images); the final tanh matches images in [-1, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.gan.vanilla_gan.config import VanillaGANConfig


def _mlp(widths: list[int], dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-2], widths[1:-1]):
        layers += [nn.Linear(a, b), nn.LeakyReLU(0.2, True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(widths[-2], widths[-1]))
    return nn.Sequential(*layers)


class Generator(nn.Module):
    def __init__(self, config: VanillaGANConfig):
        super().__init__()
        self.config = config
        self.net = _mlp([config.latent_dim + config.num_classes, *config.g_hidden, config.num_pixels])

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        if c.num_classes:
            if labels is None:
                raise ValueError("this generator is class-conditional: pass labels")
            z = torch.cat([z, F.one_hot(labels, c.num_classes).to(z.dtype)], dim=1)
        return torch.tanh(self.net(z)).view(-1, c.channels, c.image_size, c.image_size)


class Discriminator(nn.Module):
    def __init__(self, config: VanillaGANConfig):
        super().__init__()
        self.config = config
        self.net = _mlp([config.num_pixels + config.num_classes, *config.d_hidden, 1], config.dropout)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        x = x.flatten(1)
        if c.num_classes:
            if labels is None:
                raise ValueError("this discriminator is class-conditional: pass labels")
            x = torch.cat([x, F.one_hot(labels, c.num_classes).to(x.dtype)], dim=1)
        return self.net(x).flatten()

"""DCGAN (Radford et al. 2015): all-convolutional generator and discriminator with batch norm.

Module names follow the PyTorch examples release (`main.<index>`), so its `netG.pth` loads
as is; the class-conditional option adds `class_embed` (joined to z) and `class_proj`
(a projection term, Miyato & Koyama 2018) on top.
"""
from __future__ import annotations

import torch
from torch import nn

from models.gan.dcgan.config import DCGANConfig


def dcgan_init(module: nn.Module) -> None:
    """The paper's init: N(0, 0.02) for convolutions, N(1, 0.02) for batch-norm scales."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 1.0)


class Generator(nn.Module):
    """z (B, latent_dim) [+ class] -> image (B, C, S, S) in [-1, 1]."""

    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.config = config
        n = config.num_upsamplings
        in_ch = config.latent_dim + (config.class_embed_dim if config.num_classes else 0)
        width = config.ngf * 2 ** (n - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(in_ch, width, 4, 1, 0, bias=False), nn.BatchNorm2d(width),
                                   nn.ReLU(True)]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2),
                       nn.ReLU(True)]
            width //= 2
        layers += [nn.ConvTranspose2d(width, config.channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        if config.num_classes:
            self.class_embed = nn.Embedding(config.num_classes, config.class_embed_dim)
        dcgan_init(self)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.latent_dim,)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.config.num_classes:
            if labels is None:
                raise ValueError("this generator is class-conditional: pass labels")
            z = torch.cat([z, self.class_embed(labels).to(z.dtype)], dim=1)
        return self.main(z.reshape(z.shape[0], -1, 1, 1))


class Discriminator(nn.Module):
    """image -> one logit per image (the example's final Sigmoid is folded into the loss)."""

    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.config = config
        n = config.num_upsamplings
        width = config.ndf
        layers: list[nn.Module] = [nn.Conv2d(config.channels, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for _ in range(n - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2),
                       nn.LeakyReLU(0.2, True)]
            width *= 2
        layers += [nn.Conv2d(width, 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)
        if config.num_classes:
            self.class_proj = nn.Embedding(config.num_classes, width)
        dcgan_init(self)
        if config.num_classes:
            nn.init.normal_(self.class_proj.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.main[:-1](x)
        out = self.main[-1](h).flatten()
        if self.config.num_classes:
            if labels is None:
                raise ValueError("this discriminator is class-conditional: pass labels")
            out = out + (self.class_proj(labels) * h.sum(dim=(2, 3))).sum(dim=1)
        return out

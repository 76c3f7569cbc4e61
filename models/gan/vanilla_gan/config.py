"""Vanilla GAN configuration and presets."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VanillaGANConfig:
    image_size: int = 28
    """Output side in pixels (images are flattened for the MLPs)."""
    channels: int = 1
    """Image channels."""
    latent_dim: int = 100
    """Length of z."""
    g_hidden: tuple[int, ...] = (256, 512, 1024)
    """Widths of the generator's hidden layers."""
    d_hidden: tuple[int, ...] = (512, 256)
    """Widths of the discriminator's hidden layers."""
    dropout: float = 0.3
    """Dropout in the discriminator (Goodfellow et al. regularised D with dropout)."""
    num_classes: int = 0
    """0 for unconditional; else a one-hot label joins the inputs of G and D (Mirza & Osindero 2014)."""
    class_names: tuple[str, ...] = ()
    """Names a prompt may use for the classes; defaults to '0'..'N-1'."""

    @property
    def num_pixels(self) -> int:
        return self.channels * self.image_size * self.image_size


PRESETS: dict[str, VanillaGANConfig] = {
    "mnist": VanillaGANConfig(),
    "digits": VanillaGANConfig(image_size=16, latent_dim=32, g_hidden=(128, 256), d_hidden=(256, 128),
                               num_classes=10, class_names=tuple(str(i) for i in range(10))),
    "tiny": VanillaGANConfig(image_size=8, latent_dim=8, g_hidden=(16,), d_hidden=(16,)),
}

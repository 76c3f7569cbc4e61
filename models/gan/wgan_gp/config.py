"""WGAN-GP configuration and presets."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WGANGPConfig:
    """Field names match DCGANConfig, so the DCGAN generator is reused as is."""

    image_size: int = 32
    """Output side in pixels: a power of two, at least 16."""
    channels: int = 3
    latent_dim: int = 128
    ngf: int = 128
    """Width of the generator's last hidden layer (DIM in the authors' gan_cifar.py); earlier layers double it."""
    ndf: int = 128
    """Width of the critic's first layer; later layers double it."""
    critic_norm: str = "none"
    """'none' (the paper's CIFAR critic) or 'layer' (layer norm, the paper's drop-in for batch norm)."""
    num_classes: int = 0
    """Always 0: the WGAN-GP models here are unconditional (kept for the shared generator)."""
    class_embed_dim: int = 32
    class_names: tuple[str, ...] = ()

    @property
    def num_upsamplings(self) -> int:
        n = self.image_size.bit_length() - 1
        if 2**n != self.image_size or n < 4:
            raise ValueError(f"image_size must be a power of two >= 16, got {self.image_size}")
        return n - 2


PRESETS: dict[str, WGANGPConfig] = {
    # the sizes of the authors' CIFAR-10 DCGAN-style model (gan_cifar.py: DIM=128, 128-d noise)
    "cifar-32": WGANGPConfig(),
    # trained here on the scikit-learn digits
    "digits": WGANGPConfig(image_size=32, channels=1, latent_dim=64, ngf=32, ndf=32, critic_norm="layer"),
    "tiny": WGANGPConfig(image_size=16, channels=3, latent_dim=8, ngf=8, ndf=8),
}

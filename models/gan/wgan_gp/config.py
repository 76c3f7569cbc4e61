"""WGAN-GP configuration and presets."""
from __future__ import annotations

from dataclasses import dataclass

from models.gan.dcgan.config import DCGANConfig


@dataclass(frozen=True)
class WGANGPConfig(DCGANConfig):
    """DCGAN's configuration (its generator is reused as is) with the authors' CIFAR sizes and a critic norm.

    The WGAN-GP models here are unconditional: `num_classes` stays 0.
    """

    image_size: int = 32
    latent_dim: int = 128
    ngf: int = 128
    """Width of the generator's last hidden layer (DIM in the authors' gan_cifar.py); earlier layers double it."""
    ndf: int = 128
    """Width of the critic's first layer; later layers double it."""
    critic_norm: str = "none"
    """'none' (the paper's CIFAR critic) or 'layer' (layer norm, the paper's drop-in for batch norm)."""


PRESETS: dict[str, WGANGPConfig] = {
    # the sizes of the authors' CIFAR-10 DCGAN-style model (gan_cifar.py: DIM=128, 128-d noise)
    "cifar-32": WGANGPConfig(),
    # trained here on the scikit-learn digits
    "digits": WGANGPConfig(image_size=32, channels=1, latent_dim=64, ngf=32, ndf=32, critic_norm="layer"),
    "tiny": WGANGPConfig(image_size=16, channels=3, latent_dim=8, ngf=8, ndf=8),
}

"""DCGAN configuration and presets."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DCGANConfig:
    image_size: int = 64
    """Output side in pixels: a power of two, at least 16."""
    channels: int = 3
    """Image channels (nc in the PyTorch example)."""
    latent_dim: int = 100
    """Length of z (nz)."""
    ngf: int = 64
    """Width of the generator's last hidden layer; earlier layers double it."""
    ndf: int = 64
    """Width of the discriminator's first layer; later layers double it."""
    num_classes: int = 0
    """0 for unconditional; else a class embedding joins z and a projection term joins D."""
    class_embed_dim: int = 32
    """Length of the class embedding concatenated to z (conditional only)."""
    class_names: tuple[str, ...] = ()
    """Names a prompt may use for the classes; defaults to '0'..'N-1'."""

    @property
    def num_upsamplings(self) -> int:
        n = self.image_size.bit_length() - 1
        if 2**n != self.image_size or n < 4:
            raise ValueError(f"image_size must be a power of two >= 16, got {self.image_size}")
        return n - 2


PRESETS: dict[str, DCGANConfig] = {
    # the PyTorch examples DCGAN (netG.pth / netD.pth), trained on CelebA or LSUN at 64x64
    "celeba-64": DCGANConfig(),
    # the weights shipped in this package, trained here on the scikit-learn digits
    "digits": DCGANConfig(image_size=32, channels=1, latent_dim=64, ngf=16, ndf=16, num_classes=10,
                          class_names=tuple(str(i) for i in range(10))),
    "tiny": DCGANConfig(image_size=16, channels=3, latent_dim=8, ngf=8, ndf=8),
}

"""Progressive GAN configuration and presets."""
from __future__ import annotations

from dataclasses import dataclass

# pytorch_GAN_zoo's standard PGAN configuration (models/trainer/standard_configurations/pgan_config.py):
# depthScales, one per resolution 4, 8, ..., 1024, with a 512-d latent
OFFICIAL_DEPTHS = (512, 512, 512, 512, 256, 128, 64, 32, 16)


@dataclass(frozen=True)
class ProGANConfig:
    depths: tuple[int, ...] = OFFICIAL_DEPTHS
    """Channels of the convolutions at each scale, from 4x4 up (depthScales; depths[0] is depthScale0)."""
    latent_dim: int = 512
    channels: int = 3
    """Output image channels (dimOutput)."""
    pixel_norm: bool = True
    """Pixel-wise feature normalisation in the generator (and on the latent)."""
    minibatch_std: bool = True
    """A minibatch standard-deviation channel before the discriminator's last scale."""
    minibatch_group: int = 4
    """Samples per group of the minibatch standard deviation."""
    leaky_slope: float = 0.2

    @property
    def num_scales(self) -> int:
        return len(self.depths)

    @property
    def image_size(self) -> int:
        return 4 * 2 ** (len(self.depths) - 1)


PRESETS: dict[str, ProGANConfig] = {
    # the full pytorch_GAN_zoo / paper CelebA-HQ model (4 -> 1024)
    "celebahq-1024": ProGANConfig(),
    # the same configuration stopped at 512 and 256 (pytorch_GAN_zoo's _s7 and _s6 snapshots)
    "celebahq-512": ProGANConfig(depths=OFFICIAL_DEPTHS[:8]),
    "celebahq-256": ProGANConfig(depths=OFFICIAL_DEPTHS[:7]),
    # trained here on the scikit-learn digits: 4 -> 32
    "digits-32": ProGANConfig(depths=(64, 64, 32, 16), latent_dim=64, channels=1),
    "tiny": ProGANConfig(depths=(16, 8), latent_dim=8, channels=3),
}

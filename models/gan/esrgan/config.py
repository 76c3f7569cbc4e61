"""Super-resolution configs: SRGAN's SRResNet and ESRGAN / Real-ESRGAN's RRDBNet, with their presets."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RRDBNetConfig:
    """ESRGAN's generator (Wang et al. 2018) as Real-ESRGAN ships it, and its training discriminator."""

    scale: int = 4
    """Output side / input side."""
    in_channels: int = 3
    """Image channels in (before any pixel unshuffle)."""
    out_channels: int = 3
    """Image channels out."""
    num_feat: int = 64
    """Width of the trunk (nf)."""
    num_block: int = 23
    """Residual-in-residual dense blocks in the trunk (nb): 23 for RealESRGAN_x4plus, 6 for the anime model."""
    num_grow_ch: int = 32
    """Channels each dense layer adds (gc)."""
    unshuffle: int = 1
    """Pixel-unshuffle factor applied to the input first (Real-ESRGAN x2: 2, x1: 4): the trunk then runs at
    1 / unshuffle of the input side and upsamples by scale * unshuffle."""
    upsample_factors: tuple[int, ...] = (2, 2)
    """Nearest-neighbour upsampling steps, each followed by a 3x3 conv and LeakyReLU (conv_up1, conv_up2...);
    their product is scale * unshuffle."""
    discriminator: str = "unet"
    """Training discriminator: 'unet' (Real-ESRGAN's U-Net with spectral norm) or 'vgg' (ESRGAN's VGG-style
    discriminator on fixed-size crops)."""
    d_features: int = 64
    """Width of the discriminator's first layer."""
    hr_size: int = 256
    """Side of the high-resolution training crops (the VGG discriminator is built for this size)."""

    @property
    def image_size(self) -> int:
        """The training crop side (what train_gan calls the image size)."""
        return self.hr_size

    @property
    def channels(self) -> int:
        return self.out_channels


@dataclass(frozen=True)
class SRResNetConfig:
    """SRGAN's generator (Ledig et al. 2017: SRResNet) and its VGG-style discriminator."""

    scale: int = 4
    """Output side / input side: a power of two (one x2 sub-pixel block per factor 2)."""
    channels: int = 3
    """Image channels in and out."""
    num_feat: int = 64
    """Width of the trunk."""
    num_block: int = 16
    """Residual blocks (conv-BN-PReLU-conv-BN with a skip)."""
    d_features: int = 64
    """Width of the discriminator's first layer (doubled every second layer up to 8x)."""
    hr_size: int = 96
    """Side of the high-resolution training crops (96 in the paper; the discriminator's dense layer is
    built for it)."""

    @property
    def image_size(self) -> int:
        return self.hr_size


RRDB_PRESETS: dict[str, RRDBNetConfig] = {
    # ESRGAN (ECCV 2018 workshops): RRDB_ESRGAN_x4.pth, trained with the VGG-style discriminator on 128 crops
    "esrgan": RRDBNetConfig(discriminator="vgg", hr_size=128),
    # Real-ESRGAN (ICCVW 2021): trained on the second-order degradation pipeline, U-Net discriminator
    "realesrgan-x4plus": RRDBNetConfig(),
    # Real-ESRNet (the same paper): the L1-only (PSNR) stage on the same degradations; starts Real-ESRGAN
    "realesrnet-x4plus": RRDBNetConfig(),
    "realesrgan-x4plus-anime-6b": RRDBNetConfig(num_block=6),
    "realesrgan-x2plus": RRDBNetConfig(scale=2, unshuffle=2),
    "tiny": RRDBNetConfig(num_feat=8, num_block=1, num_grow_ch=4, d_features=8, hr_size=32),
}

SRRESNET_PRESETS: dict[str, SRResNetConfig] = {
    "srgan": SRResNetConfig(),
    "tiny": SRResNetConfig(num_feat=8, num_block=1, d_features=8, hr_size=32),
}

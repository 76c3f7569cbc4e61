"""CycleGAN configuration and presets."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CycleGANConfig:
    image_size: int = 256
    """Training crop side (crop_size); the fully convolutional generator translates any size divisible by 4."""
    in_channels: int = 3
    out_channels: int = 3
    ngf: int = 64
    """Width of the generator's first layer (doubled twice by the downsampling)."""
    ndf: int = 64
    """Width of the PatchGAN's first layer."""
    n_blocks: int = 9
    """Residual blocks of the generator (resnet_9blocks / resnet_6blocks)."""
    n_layers_d: int = 3
    """Strided layers of the PatchGAN: 3 gives the 70x70 receptive field."""
    use_dropout: bool = False
    """Dropout(0.5) inside the residual blocks (off for CycleGAN in the original code)."""

    @property
    def channels(self) -> int:
        return self.in_channels


PRESETS: dict[str, CycleGANConfig] = {
    # the original release's generators: resnet_9blocks for 256x256 data, resnet_6blocks for 128x128
    "resnet-9blocks": CycleGANConfig(),
    "resnet-6blocks": CycleGANConfig(image_size=128, n_blocks=6),
    # trained here on the built-in unpaired digits (white on black <-> ink on paper)
    "digits": CycleGANConfig(image_size=32, ngf=16, ndf=16, n_blocks=4),
    "tiny": CycleGANConfig(image_size=32, ngf=4, ndf=4, n_blocks=1),
}

from models.gan.cyclegan.spec import RELEASED  # noqa: E402 - junyanz's pretrained generators (resnet_9blocks)

PRESETS.update({name: PRESETS["resnet-9blocks"] for name in RELEASED})

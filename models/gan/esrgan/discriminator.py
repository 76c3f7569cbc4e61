"""The super-resolution discriminators: the VGG-style one of SRGAN / ESRGAN and Real-ESRGAN's U-Net with
spectral norm. Both take images in the generator's value range; the U-Net returns a per-pixel map."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


class VGGStyleDiscriminator(nn.Module):
    """Eight 3x3 convs (stride 1 and 2 in turn, widths nf, nf, 2nf, 2nf, 4nf, 4nf, 8nf, 8nf for SRGAN; ESRGAN
    adds a fifth pair at 8nf for its 128 crops, with 4x4 kernels on the strided convs), batch norm after all but
    the first, LeakyReLU(0.2); then dense 1024 (SRGAN) / 100 (ESRGAN), LeakyReLU, dense 1. Built for
    `size` x `size` crops."""

    def __init__(self, channels: int, num_feat: int, size: int, hidden: int = 1024, stages: int = 4,
                 down_kernel: int = 3):
        super().__init__()
        widths = [num_feat * min(2 ** i, 8) for i in range(stages)]
        layers: list[nn.Module] = []
        cin = channels
        for i, w in enumerate(widths):
            for stride in (1, 2):
                k = 3 if stride == 1 else down_kernel
                layers.append(nn.Conv2d(cin, w, k, stride, 1, bias=(i == 0 and stride == 1)))
                if not (i == 0 and stride == 1):
                    layers.append(nn.BatchNorm2d(w))
                layers.append(nn.LeakyReLU(0.2))
                cin = w
        self.features = nn.Sequential(*layers)
        side = size // 2 ** stages
        if side < 1 or size % 2 ** stages:
            raise ValueError(f"the VGG-style discriminator needs crops divisible by {2 ** stages}, got {size}")
        self.classifier = nn.Sequential(nn.Linear(cin * side * side, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's discriminator: a U-Net (three stride-2 4x4 convs down, three bilinear x2 + 3x3 convs up
    with skips, two 3x3 convs, a 1-channel 3x3 conv), spectral norm on every conv but the first and last,
    LeakyReLU(0.2). Returns one realness logit per pixel (B, 1, H, W)."""

    def __init__(self, channels: int = 3, num_feat: int = 64, skip_connection: bool = True):
        super().__init__()
        nf = num_feat
        self.skip_connection = skip_connection
        self.conv0 = nn.Conv2d(channels, nf, 3, 1, 1)
        self.conv1 = spectral_norm(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
        up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3)))
        x4 = x4 + x2 if self.skip_connection else x4
        x5 = act(self.conv5(up(x4)))
        x5 = x5 + x1 if self.skip_connection else x5
        x6 = act(self.conv6(up(x5)))
        x6 = x6 + x0 if self.skip_connection else x6
        return self.conv9(act(self.conv8(act(self.conv7(x6)))))


def build_discriminator(config) -> nn.Module:
    """The discriminator a config trains with (see RRDBNetConfig.discriminator; SRGAN: VGG-style, dense 1024)."""
    from models.gan.esrgan.config import RRDBNetConfig

    if isinstance(config, RRDBNetConfig):
        if config.discriminator == "unet":
            return UNetDiscriminatorSN(config.out_channels, config.d_features)
        # ESRGAN's VGGStyleDiscriminator128: five stages (4x4 before the dense layers), dense 100
        return VGGStyleDiscriminator(config.out_channels, config.d_features, config.hr_size, hidden=100, stages=5,
                                     down_kernel=4)
    return VGGStyleDiscriminator(config.channels, config.d_features, config.hr_size, hidden=1024, stages=4)

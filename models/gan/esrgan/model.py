"""The super-resolution generators: ESRGAN's RRDBNet (Real-ESRGAN's layout) and SRGAN's SRResNet.

Both take low-resolution images (B, C, h, w) and return (B, C, scale h, scale w). RRDBNet works on
images in [0, 1] (as every released ESRGAN / Real-ESRGAN model); SRResNet in [-1, 1] with a tanh output
(the seed's sketch; the paper scales the HR targets to [-1, 1]).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.gan.esrgan.config import RRDBNetConfig, SRResNetConfig
from models.gan.esrgan.layers import RRDB, ResidualBlock, SubPixelUpsample


def check_rrdb_config(config: RRDBNetConfig) -> None:
    if math.prod(config.upsample_factors) != config.scale * config.unshuffle:
        raise ValueError(f"upsample factors {config.upsample_factors} must multiply to scale x unshuffle = "
                         f"{config.scale * config.unshuffle}")


class RRDBNet(nn.Module):
    """conv_first -> body (num_block RRDBs) -> conv_body, added to conv_first's output -> nearest x2 upsampling
    steps (conv_up1, conv_up2...) -> conv_hr -> conv_last. Inputs whose sides are not multiples of the
    unshuffle factor are reflect-padded and the output cropped back."""

    value_range = (0.0, 1.0)

    def __init__(self, config: RRDBNetConfig):
        super().__init__()
        check_rrdb_config(config)
        self.config = config
        c, nf = config.in_channels * config.unshuffle ** 2, config.num_feat
        self.conv_first = nn.Conv2d(c, nf, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(nf, config.num_grow_ch) for _ in range(config.num_block)))
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        for i, _ in enumerate(config.upsample_factors, 1):
            self.add_module(f"conv_up{i}", nn.Conv2d(nf, nf, 3, 1, 1))
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, config.out_channels, 3, 1, 1)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.config.unshuffle
        h, w = x.shape[-2:]
        if r > 1:
            pad_h, pad_w = (-h) % r, (-w) % r
            if pad_h or pad_w:
                x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
            x = F.pixel_unshuffle(x, r)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for i, factor in enumerate(self.config.upsample_factors, 1):
            feat = F.interpolate(feat, scale_factor=factor, mode="nearest")
            feat = F.leaky_relu(getattr(self, f"conv_up{i}")(feat), 0.2)
        out = self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))
        s = self.config.scale
        return out[..., : h * s, : w * s] if r > 1 else out


class SRResNet(nn.Module):
    """SRGAN's generator: 9x9 conv + PReLU, num_block residual blocks, 3x3 conv + BN with a skip from the
    first layer, log2(scale) sub-pixel x2 blocks, 9x9 conv, tanh."""

    value_range = (-1.0, 1.0)

    def __init__(self, config: SRResNetConfig):
        super().__init__()
        steps = int(math.log2(config.scale))
        if 2 ** steps != config.scale:
            raise ValueError(f"SRResNet's scale must be a power of two, got {config.scale}")
        self.config = config
        nf = config.num_feat
        self.conv_first = nn.Conv2d(config.channels, nf, 9, 1, 4)
        self.prelu = nn.PReLU(nf)
        self.body = nn.Sequential(*(ResidualBlock(nf) for _ in range(config.num_block)))
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.bn_body = nn.BatchNorm2d(nf)
        self.upsample = nn.Sequential(*(SubPixelUpsample(nf) for _ in range(steps)))
        self.conv_last = nn.Conv2d(nf, config.channels, 9, 1, 4)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.prelu(self.conv_first(x))
        feat = first + self.bn_body(self.conv_body(self.body(first)))
        return torch.tanh(self.conv_last(self.upsample(feat)))


def build_generator(config: RRDBNetConfig | SRResNetConfig) -> nn.Module:
    return RRDBNet(config) if isinstance(config, RRDBNetConfig) else SRResNet(config)

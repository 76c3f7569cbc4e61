"""The blocks of the super-resolution generators: ESRGAN's dense blocks and SRGAN's residual and sub-pixel blocks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RESIDUAL_SCALE = 0.2
"""ESRGAN's residual scaling: each dense block and each RRDB adds 0.2 x its output to its input."""


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the block input and every earlier output (dense connections);
    LeakyReLU(0.2) after the first four; the fifth maps back to `num_feat` channels."""

    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return x + RESIDUAL_SCALE * self.conv5(torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks in a chain, with a scaled skip around them."""

    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RESIDUAL_SCALE * self.rdb3(self.rdb2(self.rdb1(x)))


class ResidualBlock(nn.Module):
    """SRGAN's block: 3x3 conv, batch norm, PReLU, 3x3 conv, batch norm, plus the input."""

    def __init__(self, num_feat: int):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(num_feat)
        self.prelu = nn.PReLU(num_feat)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))


class SubPixelUpsample(nn.Module):
    """x2 upsampling by a sub-pixel convolution (Shi et al. 2016): conv to 4x the channels, pixel shuffle, PReLU."""

    def __init__(self, num_feat: int):
        super().__init__()
        self.conv = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(2)
        self.prelu = nn.PReLU(num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.shuffle(self.conv(x)))

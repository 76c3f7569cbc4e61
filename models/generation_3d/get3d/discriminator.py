"""GET3D's discriminator in nv-tlabs' layout (training/discriminator_architecture.py): two StyleGAN2
discriminators conditioned on the camera, one on the RGB image (`b<res>`, `mapping`, `b4`) and one on
the silhouette (`mask_b<res>`, `mask_mapping`, `mask_b4`), built from the project's StyleGAN2 blocks.

The camera condition is the view's two angles (rotation, elevation) a, encoded as
[sin(2^i a), cos(2^i a) for i = 0, 1, 2] followed by a itself (2 + 12 values), after any class label.
The input image holds the RGB channels and then the mask channel; `forward` returns the two logits
(rgb, mask), each (B, 1).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from utils.nn.stylegan.discriminator import DiscriminatorBlock, DiscriminatorEpilogue
from utils.nn.stylegan.mapping import MappingNetwork

__all__ = ["GET3DDiscriminator", "encode_camera"]

CAMERA_DIM = 2
"""Camera angles per view: rotation and elevation."""
CAMERA_FREQUENCIES = 3
"""Octaves of the sin/cos camera encoding."""


def encode_camera(angles: Tensor) -> Tensor:
    """(B, 2) angles -> (B, 14): sin and cos at 1, 2, 4 times the angles, then the angles."""
    parts = [torch.cat([torch.sin(2 ** i * angles), torch.cos(2 ** i * angles)], -1) for i in range(CAMERA_FREQUENCIES)]
    return torch.cat(parts + [angles], -1)


class GET3DDiscriminator(nn.Module):
    """RGB and silhouette discriminators sharing one camera condition; see the module docstring."""

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int = 3, architecture: str = "skip",
                 channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 4,
                 conv_clamp: float | None = 256, cmap_dim: int | None = None, add_camera_cond: bool = True,
                 mbstd_group_size: int | None = 4):
        super().__init__()
        self.conditional_dim, self.add_camera_cond = c_dim, add_camera_cond
        self.img_resolution, self.img_channels_drgb, self.img_channels_dmask = img_resolution, img_channels, 1
        log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.c_dim = c_dim + (CAMERA_DIM * (1 + 2 * CAMERA_FREQUENCIES) if add_camera_cond else 0)
        cmap_dim = (channels[4] if cmap_dim is None else cmap_dim) if self.c_dim > 0 else 0
        for prefix, n_in in (("", img_channels), ("mask_", 1)):
            common = dict(img_channels=n_in, architecture=architecture, conv_clamp=conv_clamp)
            for res in self.block_resolutions:
                setattr(self, f"{prefix}b{res}", DiscriminatorBlock(
                    channels[res] if res < img_resolution else 0, channels[res], channels[res // 2], resolution=res,
                    use_fp16=res >= fp16_resolution, **common))
            if self.c_dim > 0:
                setattr(self, f"{prefix}mapping", MappingNetwork(z_dim=0, c_dim=self.c_dim, w_dim=cmap_dim, num_ws=None,
                                                                 w_avg_beta=None))
            setattr(self, f"{prefix}b4", DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4,
                                                               mbstd_group_size=mbstd_group_size, **common))

    def _branch(self, prefix: str, img: Tensor, c: Tensor | None) -> Tensor:
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"{prefix}b{res}")(x, img)
        cmap = getattr(self, f"{prefix}mapping")(None, c) if self.c_dim > 0 else None
        return getattr(self, f"{prefix}b4")(x, img, cmap)

    def forward(self, img: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """img (B, img_channels + 1, R, R), c (B, c_dim + 2) labels then camera angles -> (rgb, mask) logits."""
        if self.add_camera_cond:
            c = torch.cat([c[:, :self.conditional_dim], encode_camera(c[:, self.conditional_dim:])], -1)
        else:
            c = None
        rgb, mask = img[:, :self.img_channels_drgb], img[:, self.img_channels_drgb:self.img_channels_drgb + 1]
        mask_logits = self._branch("mask_", mask, c)
        return self._branch("", rgb, c), mask_logits

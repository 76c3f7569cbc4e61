"""The blocks only the Wan 2.2 video VAE has (the 48-channel VAE of Wan 2.2 TI2V-5B).

The Wan 2.2 VAE is the Wan 2.1 network (`utils.encoders.wan_vae`: the same causal convolutions,
residual blocks, resamplers, middle attention and feature cache) with three changes, all switched on
by `WanVAEConfig(is_residual=True, patch_size=2)`:

- the frames are folded 2x2 into channels before the encoder (3 -> 12 channels, half the height and
  width) and unfolded after the decoder (`patchify` / `unpatchify`): 8x from the network x 2 = 16x;
- every encoder level is one residual down block: its residual blocks and resampler, plus a shortcut
  that folds the level's time and space reduction into channels and averages groups of them
  (`SpaceTimeAverageDown`, no weights); every decoder level likewise adds a shortcut that repeats
  channels and unfolds them into time and space (`SpaceTimeRepeatUp`);
- the decoder has its own width (`decoder_base_dim`, 256 in the release against the encoder's 160)
  and its upsamplers keep the width (the 2.1 ones halve it).

Module names are diffusers' (`encoder.down_blocks.I.{resnets.J, downsampler}`,
`decoder.up_blocks.I.{resnets.J, upsampler}`); `utils.encoders.wan_vae_convert` maps the official
`Wan2.2_VAE.pth` names (`encoder.downsamples.I.downsamples.J...`) onto them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import UserError

if TYPE_CHECKING:
    from utils.encoders.wan_vae import FeatureCache, WanVAEConfig

# Per-channel statistics of the raw Wan 2.2 VAE latents, as the release publishes them
# (wan/modules/vae2_2.py, Wan2_2_VAE; diffusers' Wan2.2-TI2V-5B-Diffusers vae/config.json).
WAN22_LATENTS_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891,
    0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723,
    -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667)
WAN22_LATENTS_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
    0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
    0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744)


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C p p, T, H/p, W/p). Channel c * p * p + j * p + i holds pixel row i,
    column j of each p x p cell (the column index is the slower one, as the release folds them)."""
    if p == 1:
        return x
    b, c, t, h, w = x.shape
    cells = x.reshape(b, c, t, h // p, p, w // p, p)  # b c t h' i w' j
    return cells.permute(0, 1, 6, 4, 2, 3, 5).reshape(b, c * p * p, t, h // p, w // p)


def unpatchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """The inverse of `patchify`: (B, C p p, T, h, w) -> (B, C, T, h p, w p)."""
    if p == 1:
        return x
    b, cpp, t, h, w = x.shape
    cells = x.reshape(b, cpp // (p * p), p, p, t, h, w)  # b c j i t h w
    return cells.permute(0, 1, 4, 5, 3, 6, 2).reshape(b, cpp // (p * p), t, h * p, w * p)


class SpaceTimeAverageDown(nn.Module):
    """The down blocks' weightless shortcut: fold each (ft, fs, fs) cell of the volume into channels
    (ft zero-padded at the start of time to a whole cell), then average consecutive groups of those
    channels down to `out_channels`."""

    def __init__(self, in_channels: int, out_channels: int, factor_t: int, factor_s: int):
        super().__init__()
        self.out_channels, self.factor_t, self.factor_s = out_channels, factor_t, factor_s
        folded = in_channels * factor_t * factor_s * factor_s
        if folded % out_channels:
            raise UserError(f"Wan 2.2 VAE shortcut: {in_channels} channels x {factor_t * factor_s ** 2} cell voxels "
                            f"do not split into {out_channels} groups: fix the config's widths")
        self.group = folded // out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ft, fs = self.factor_t, self.factor_s
        short = -x.shape[2] % ft
        if short:
            x = F.pad(x, (0, 0, 0, 0, short, 0))
        b, c, t, h, w = x.shape
        cells = x.reshape(b, c, t // ft, ft, h // fs, fs, w // fs, fs)
        cells = cells.permute(0, 1, 3, 5, 7, 2, 4, 6)  # b c dt dh dw t' h' w'
        return cells.reshape(b, self.out_channels, self.group, t // ft, h // fs, w // fs).mean(dim=2)


class SpaceTimeRepeatUp(nn.Module):
    """The up blocks' weightless shortcut: repeat each channel, then unfold the copies into (ft, fs, fs)
    cells of time and space. On a clip's first chunk the first ft - 1 frames are dropped (the first
    latent frame is one frame, not ft)."""

    def __init__(self, in_channels: int, out_channels: int, factor_t: int, factor_s: int):
        super().__init__()
        self.out_channels, self.factor_t, self.factor_s = out_channels, factor_t, factor_s
        voxels = out_channels * factor_t * factor_s * factor_s
        if voxels % in_channels:
            raise UserError(f"Wan 2.2 VAE shortcut: {out_channels} channels x {factor_t * factor_s ** 2} cell voxels "
                            f"are no multiple of {in_channels} input channels: fix the config's widths")
        self.repeats = voxels // in_channels

    def forward(self, x: torch.Tensor, first_chunk: bool = False) -> torch.Tensor:
        ft, fs = self.factor_t, self.factor_s
        b, _, t, h, w = x.shape
        x = x.repeat_interleave(self.repeats, dim=1).reshape(b, self.out_channels, ft, fs, fs, t, h, w)
        x = x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, self.out_channels, t * ft, h * fs, w * fs)
        return x[:, :, ft - 1:] if first_chunk else x


class WanResidualDownBlock(nn.Module):
    """One encoder level: resnets (num_res_blocks), then `downsampler` (all levels but the last),
    plus `avg_shortcut` from the level's input."""

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, downsample: bool, temporal: bool):
        super().__init__()
        from utils.encoders.wan_vae import WanResample, WanResidualBlock

        self.resnets = nn.ModuleList(WanResidualBlock(in_dim if i == 0 else out_dim, out_dim)
                                     for i in range(num_res_blocks))
        self.downsampler = WanResample(out_dim, "down", temporal) if downsample else None
        self.avg_shortcut = SpaceTimeAverageDown(in_dim, out_dim, 2 if temporal else 1, 2 if downsample else 1)

    def forward(self, x: torch.Tensor, cache: "FeatureCache | None" = None) -> torch.Tensor:
        skip = self.avg_shortcut(x)
        for resnet in self.resnets:
            x = resnet(x, cache)
        if self.downsampler is not None:
            x = self.downsampler(x, cache)
        return x + skip


class WanResidualUpBlock(nn.Module):
    """One decoder level: resnets (num_res_blocks + 1), then `upsampler` (all levels but the last; it
    keeps the width), plus `avg_shortcut` from the level's input where the level upsamples."""

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, upsample: bool, temporal: bool):
        super().__init__()
        from utils.encoders.wan_vae import WanResample, WanResidualBlock

        self.resnets = nn.ModuleList(WanResidualBlock(in_dim if i == 0 else out_dim, out_dim)
                                     for i in range(num_res_blocks + 1))
        self.upsampler = WanResample(out_dim, "up", temporal, out_dim=out_dim) if upsample else None
        self.avg_shortcut = SpaceTimeRepeatUp(in_dim, out_dim, 2 if temporal else 1, 2) if upsample else None

    def forward(self, x: torch.Tensor, cache: "FeatureCache | None" = None) -> torch.Tensor:
        first = True
        if cache is not None:  # the first call of a stream is the clip's first chunk
            first = cache.seen(self) is None
            cache.keep(self, x[:, :, :0])
        skip = None if self.avg_shortcut is None else self.avg_shortcut(x, first_chunk=first)
        for resnet in self.resnets:
            x = resnet(x, cache)
        if self.upsampler is not None:
            x = self.upsampler(x, cache)
        return x if skip is None else x + skip


def residual_down_blocks(cfg: "WanVAEConfig", dims: list[int]) -> nn.ModuleList:
    """The Wan 2.2 encoder levels for widths dims[0] -> dims[1] -> ... (one block per level)."""
    last = len(cfg.dim_mult) - 1
    return nn.ModuleList(
        WanResidualDownBlock(in_dim, out_dim, cfg.num_res_blocks, i != last,
                             cfg.temporal_downsample[i] if i != last else False)
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])))


def residual_up_blocks(cfg: "WanVAEConfig", dims: list[int]) -> nn.ModuleList:
    """The Wan 2.2 decoder levels for widths dims[0] -> dims[1] -> ... (time mirrors the encoder)."""
    last = len(cfg.dim_mult) - 1
    temporal_up = cfg.temporal_downsample[::-1]
    return nn.ModuleList(
        WanResidualUpBlock(in_dim, out_dim, cfg.num_res_blocks, i != last, temporal_up[i] if i != last else False)
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])))


__all__ = ["SpaceTimeAverageDown", "SpaceTimeRepeatUp", "WAN22_LATENTS_MEAN", "WAN22_LATENTS_STD",
           "WanResidualDownBlock", "WanResidualUpBlock", "patchify", "residual_down_blocks", "residual_up_blocks",
           "unpatchify"]

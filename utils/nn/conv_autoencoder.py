"""The convolutional encoder and decoder of latent diffusion's VAEs and of VQGAN, in one copy.

The KL autoencoder of SD/SDXL/SD3/FLUX (`utils.encoders.vae`) and taming-transformers' VQGAN
(`models.gan.vqgan`) share this trunk (Rombach et al. took it from taming's `diffusionmodules/model.py`):
a 3x3 `conv_in`; per resolution level, ResNet blocks (GroupNorm-SiLU-conv twice), optionally a
single-head self-attention block after each, and a stride-2 downsampling (encoder) or nearest 2x
upsampling (decoder) between levels; a middle block (ResNet, attention, ResNet) at the lowest
resolution; GroupNorm-SiLU-`conv_out`. What sits between encoder and decoder is the owner's head:
the KL VAE's moments (and 1x1 quant convs), VQGAN's quant_conv, quantizer and post_quant_conv.

Parameter names are those of the official releases (CompVis ldm single files, taming .ckpt):

    encoder.conv_in                          decoder.conv_in
    encoder.down.{i}.block.{j}.{norm1,conv1,norm2,conv2,nin_shortcut}
    encoder.down.{i}.attn.{j}.{norm,q,k,v,proj_out}     (levels in attn_levels only)
    encoder.down.{i}.downsample.conv          decoder.up.{i}.upsample.conv
    {encoder,decoder}.mid.{block_1,attn_1,block_2}
    decoder.up.{i}.block.{j}, decoder.up.{i}.attn.{j}   (up.0 is the full resolution)
    {encoder,decoder}.norm_out / conv_out

`utils.nn.conv_autoencoder_keys` maps the diffusers layouts (AutoencoderKL, VQModel) onto these names.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import UserError
from utils.nn.attention import attention


@dataclass(frozen=True)
class TrunkConfig:
    """Sizes of the encoder/decoder trunk (the heads between them belong to the owning model)."""

    in_channels: int = 3
    """Image channels the encoder reads."""
    out_channels: int = 3
    """Image channels the decoder writes."""
    base_channels: int = 128
    """Width of the full-resolution level (`ch` in the releases)."""
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    """Level i is base_channels * channel_mult[i] wide; each level but the last halves the resolution."""
    num_res_blocks: int = 2
    """ResNet blocks per encoder level; the decoder has one more per level."""
    z_channels: int = 4
    """Channels of the latent the decoder reads (and the encoder writes, doubled when `double_z`)."""
    double_z: bool = True
    """The encoder writes 2 * z_channels: mean and log-variance of the KL VAE's Gaussian."""
    attn_levels: tuple[int, ...] = ()
    """Levels with a self-attention block after every ResNet block (VQGAN: the lowest resolution)."""
    norm_groups: int = 32
    """GroupNorm groups of every norm (32 in every release); must divide every level's width."""
    dropout: float = 0.0
    """Dropout between the two convs of each ResNet block (training only)."""

    @property
    def level_channels(self) -> tuple[int, ...]:
        return tuple(self.base_channels * m for m in self.channel_mult)

    @property
    def downscale(self) -> int:
        """Pixels per latent along each side."""
        return 2 ** (len(self.channel_mult) - 1)

    def check(self) -> None:
        """A one-line UserError for sizes no trunk can be built with (instead of torch's ValueError)."""
        if not self.channel_mult or self.base_channels <= 0 or self.num_res_blocks < 1:
            raise UserError(f"an autoencoder needs at least one level, a positive width and one ResNet block per "
                            f"level (got base_channels {self.base_channels}, channel_mult {self.channel_mult}, "
                            f"num_res_blocks {self.num_res_blocks})")
        bad = [c for c in (self.base_channels, *self.level_channels) if c % self.norm_groups]
        if self.norm_groups <= 0 or bad:
            raise UserError(f"norm_groups {self.norm_groups} does not divide the {bad[0] if bad else '?'} channels of "
                            f"this autoencoder (widths {self.level_channels}): pass the norm_groups the weights were "
                            "trained with (it divides every width)")
        stray = [i for i in self.attn_levels if not 0 <= i < len(self.channel_mult)]
        if stray:
            raise UserError(f"attention at level(s) {stray}, but the autoencoder has levels 0..{len(self.channel_mult) - 1}")


# -- building blocks -----------------------------------------------------------------------------


def _silu(x: torch.Tensor) -> torch.Tensor:
    # In place when no graph is recorded: saves a full-resolution allocation per call.
    return F.silu(x, inplace=not torch.is_grad_enabled())


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv, GroupNorm-SiLU-dropout-conv, plus a 1x1 `nin_shortcut` when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_silu(self.norm1(x)))
        h = self.conv2(self.dropout(_silu(self.norm2(h))))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return h.add_(skip) if not torch.is_grad_enabled() else h + skip


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels; q, k, v and proj_out are 1x1 convs (release layout)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        # (B, HW, C); free of copies when x is channels-last.
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(b, height * width, c)
        # One matmul for q, k and v: the 1x1 convs are linear maps over channels.
        weight = torch.cat([self.q.weight, self.k.weight, self.v.weight]).flatten(1)
        bias = torch.cat([self.q.bias, self.k.bias, self.v.bias])
        q, k, v = F.linear(tokens, weight, bias).unsqueeze(1).chunk(3, dim=-1)  # each (B, 1, HW, C)
        out = attention(q, k, v).squeeze(1)
        out = F.linear(out, self.proj_out.weight.flatten(1), self.proj_out.bias)
        out = out.reshape(b, height, width, c).permute(0, 3, 1, 2)  # channels-last memory
        return out.add_(x) if not torch.is_grad_enabled() else out + x


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding one pixel on the right and bottom only (as the releases do)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour 2x, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.bfloat16:  # nearest upsampling has no bf16 kernel on some builds
            return self.conv(F.interpolate(x.float(), scale_factor=2.0, mode="nearest").to(x.dtype))
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MidBlock(nn.Module):
    """ResNet block, self-attention, ResNet block at the lowest resolution."""

    def __init__(self, channels: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups, dropout)
        self.attn_1 = AttnBlock(channels, groups)
        self.block_2 = ResnetBlock(channels, channels, groups, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Level(nn.Module):
    """One resolution level: ResNet blocks (`block`), an attention block after each (`attn`, or none),
    and the resampler to the next level (`downsample` / `upsample`, set by the owner when there is one)."""

    def __init__(self, blocks: list[ResnetBlock], attns: list[AttnBlock]):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for j, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[j](h)
        return h


def _level(cin: int, cout: int, n_blocks: int, attends: bool, cfg: TrunkConfig) -> Level:
    blocks = [ResnetBlock(cin if j == 0 else cout, cout, cfg.norm_groups, cfg.dropout) for j in range(n_blocks)]
    attns = [AttnBlock(cout, cfg.norm_groups) for _ in range(n_blocks)] if attends else []
    return Level(blocks, attns)


class Encoder(nn.Module):
    """Image (B, in_channels, H, W) -> (B, z_channels (x2 when double_z), H/f, W/f), f = cfg.downscale."""

    def __init__(self, cfg: TrunkConfig):
        super().__init__()
        cfg.check()
        chans = cfg.level_channels
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        prev = cfg.base_channels
        for i, ch in enumerate(chans):
            level = _level(prev, ch, cfg.num_res_blocks, i in cfg.attn_levels, cfg)
            if i != len(chans) - 1:
                level.downsample = Downsample(ch)
            self.down.append(level)
            prev = ch
        self.mid = MidBlock(prev, cfg.norm_groups, cfg.dropout)
        self.norm_out = group_norm(prev, cfg.norm_groups)
        self.conv_out = nn.Conv2d(prev, (2 if cfg.double_z else 1) * cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(_silu(self.norm_out(h)))


class Decoder(nn.Module):
    """(B, z_channels, h, w) -> image (B, out_channels, h*f, w*f). `up[i]` mirrors `encoder.down[i]`
    (stored full resolution first, as in the releases, and run from the lowest level up)."""

    def __init__(self, cfg: TrunkConfig):
        super().__init__()
        cfg.check()
        chans = cfg.level_channels
        prev = chans[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, prev, 3, padding=1)
        self.mid = MidBlock(prev, cfg.norm_groups, cfg.dropout)
        levels: list[Level] = []
        for i in reversed(range(len(chans))):
            level = _level(prev, chans[i], cfg.num_res_blocks + 1, i in cfg.attn_levels, cfg)
            if i != 0:
                level.upsample = Upsample(chans[i])
            levels.insert(0, level)
            prev = chans[i]
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(prev, cfg.norm_groups)
        self.conv_out = nn.Conv2d(prev, cfg.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(_silu(self.norm_out(h)))


__all__ = ["AttnBlock", "Decoder", "Downsample", "Encoder", "Level", "MidBlock", "ResnetBlock", "TrunkConfig",
           "Upsample", "group_norm"]

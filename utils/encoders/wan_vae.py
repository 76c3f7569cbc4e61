"""The Wan 2.1 and Wan 2.2 video VAEs (diffusers' `AutoencoderKLWan`): causal 3-D convolutional autoencoders.

A clip of 1 + 4k frames (B, 3, T, H, W) in [-1, 1] becomes a latent of 1 + k frames, 16 channels,
H/8 x W/8: the first frame is compressed on its own (so a still image is a one-frame clip) and every
later group of four frames into one latent frame. Every 3-D convolution is causal in time (frame t
sees frames <= t), so a clip can be encoded and decoded chunk by chunk: each causal convolution keeps
the last two frames of its input from the previous chunk (`FeatureCache`) in place of its padding, and
the result equals a single pass. Decoding runs one latent frame at a time by default, which bounds the
memory to a few frames whatever the clip length (`decode(z, chunk_size=None)` decodes the rest of the
clip after the first frame in one pass instead, with the same result).

Blocks (module names are diffusers'; `utils.encoders.wan_vae_convert` maps the official release's
`encoder.downsamples.N.residual.2` style names and diffusers' own onto them):

    encoder.conv_in, encoder.down_blocks.N (residual blocks and resamplers, flat), encoder.mid_block,
    encoder.norm_out, encoder.conv_out; quant_conv; post_quant_conv; decoder.conv_in, decoder.mid_block,
    decoder.up_blocks.I.{resnets.J, upsamplers.0}, decoder.norm_out, decoder.conv_out

Residual blocks are RMS-norm (over channels), SiLU, causal 3x3x3 conv, twice, plus a 1x1x1 shortcut;
the resamplers halve or double H and W with 2-D convs per frame and, where the level also resamples
time, a causal (3, 1, 1) conv (stride 2 down; to twice the channels, interleaved into two frames, up).
The middle has one single-head spatial self-attention per frame. Latents are normalised per channel
with the release's `latents_mean` / `latents_std` (`normalize` / `denormalize`).

The Wan 2.2 VAE (`wan_vae_config("wan2.2")`: 48 latent channels, 16x spatial) folds 2x2 pixels into
channels around the network and gives every level a weightless shortcut; its blocks live in
`utils.encoders.wan22_vae`, everything else (and the streaming) is shared.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from utils.encoders.vae import DiagonalGaussian, _starts, _tiled, upcast_fp16
from utils.encoders.wan22_vae import (WAN22_LATENTS_MEAN, WAN22_LATENTS_STD, patchify, residual_down_blocks,
                                      residual_up_blocks, unpatchify)
from utils.errors import UserError, did_you_mean
from utils.nn.attention import attention
from utils.nn.temporal import CausalConv3d, to_frames, to_volume

CACHE_FRAMES = 2
"""Frames of its input each causal 3x3x3 conv keeps between chunks (its temporal padding)."""

WAN21_LATENTS_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                      0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
WAN21_LATENTS_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                     3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)


@dataclass(frozen=True)
class WanVAEConfig:
    """Sizes of one Wan video VAE (diffusers' `AutoencoderKLWan` config names where they exist)."""

    base_dim: int = 96
    """Width of the full-resolution level."""
    z_dim: int = 16
    """Latent channels."""
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    """Level widths as multiples of base_dim; every level but the last halves H and W."""
    num_res_blocks: int = 2
    """Residual blocks per encoder level (the decoder has one more)."""
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    """Which of the encoder's resamplers also halve time (the decoder mirrors it): 4x in the release."""
    in_channels: int = 3
    """Channels of the frames."""
    latents_mean: tuple[float, ...] = WAN21_LATENTS_MEAN
    """Per-channel mean of the raw latents (normalised latents are (z - mean) / std)."""
    latents_std: tuple[float, ...] = WAN21_LATENTS_STD
    """Per-channel standard deviation of the raw latents."""
    decoder_base_dim: int | None = None
    """Width of the decoder's full-resolution level (None: base_dim; Wan 2.2: 256)."""
    is_residual: bool = False
    """Wan 2.2's levels: residual down/up blocks with weightless shortcuts (`utils.encoders.wan22_vae`)."""
    patch_size: int = 1
    """Pixels folded into channels per side around the network (Wan 2.2: 2, so 12 network channels)."""

    def __post_init__(self) -> None:
        if len(self.temporal_downsample) != len(self.dim_mult) - 1:
            raise UserError(f"Wan VAE temporal_downsample needs {len(self.dim_mult) - 1} entries (one per resampler), "
                            f"got {len(self.temporal_downsample)}: fix the config")
        if len(self.latents_mean) != self.z_dim or len(self.latents_std) != self.z_dim:
            raise UserError(f"Wan VAE latents_mean/std need {self.z_dim} values (z_dim), got "
                            f"{len(self.latents_mean)}/{len(self.latents_std)}: fix the config")
        if self.patch_size < 1 or (self.decoder_base_dim is not None and self.decoder_base_dim < 1):
            raise UserError(f"Wan VAE patch_size and decoder_base_dim must be >= 1, got {self.patch_size} and "
                            f"{self.decoder_base_dim}: fix the config")

    @property
    def spatial_ratio(self) -> int:
        """Pixels per latent pixel on each side: the network's 2 per resampler times the patch."""
        return 2 ** (len(self.dim_mult) - 1) * self.patch_size

    @property
    def network_channels(self) -> int:
        """Channels the network sees: the frames' channels times the patch's pixels."""
        return self.in_channels * self.patch_size ** 2

    @property
    def decoder_dim(self) -> int:
        return self.base_dim if self.decoder_base_dim is None else self.decoder_base_dim

    @property
    def temporal_ratio(self) -> int:
        return 2 ** sum(self.temporal_downsample)

    def to_diffusers(self) -> dict[str, Any]:
        """The config of the equivalent diffusers `AutoencoderKLWan`."""
        return dict(base_dim=self.base_dim, decoder_base_dim=self.decoder_base_dim, z_dim=self.z_dim,
                    dim_mult=list(self.dim_mult), num_res_blocks=self.num_res_blocks, attn_scales=[],
                    temperal_downsample=list(self.temporal_downsample), latents_mean=list(self.latents_mean),
                    latents_std=list(self.latents_std), is_residual=self.is_residual,
                    in_channels=self.network_channels, out_channels=self.network_channels,
                    patch_size=self.patch_size if self.patch_size > 1 else None,
                    scale_factor_temporal=self.temporal_ratio, scale_factor_spatial=self.spatial_ratio)

    @classmethod
    def from_diffusers(cls, cfg: Mapping[str, Any]) -> "WanVAEConfig":
        """Read a diffusers `AutoencoderKLWan` config.json (Wan 2.1, or Wan 2.2 with is_residual and patch_size)."""
        if cfg.get("attn_scales"):
            raise UserError(f"Wan VAE attn_scales {cfg['attn_scales']} are not supported: no release uses them")
        base = cls()
        z = int(cfg.get("z_dim", base.z_dim))
        patch = int(cfg.get("patch_size") or 1)
        channels = int(cfg.get("in_channels", 3 * patch * patch))
        if channels % (patch * patch) or int(cfg.get("out_channels", channels)) != channels:
            raise UserError(f"Wan VAE in/out_channels {channels}/{cfg.get('out_channels')} do not fit patch_size "
                            f"{patch}: fix the config")
        decoder = cfg.get("decoder_base_dim")
        return cls(base_dim=int(cfg.get("base_dim", base.base_dim)), z_dim=z,
                   decoder_base_dim=None if decoder is None else int(decoder),
                   is_residual=bool(cfg.get("is_residual", False)), patch_size=patch,
                   dim_mult=tuple(int(m) for m in cfg.get("dim_mult", base.dim_mult)),
                   num_res_blocks=int(cfg.get("num_res_blocks", base.num_res_blocks)),
                   temporal_downsample=tuple(bool(t) for t in cfg.get("temperal_downsample", base.temporal_downsample)),
                   in_channels=channels // (patch * patch),
                   latents_mean=tuple(float(v) for v in cfg.get("latents_mean", base.latents_mean)),
                   latents_std=tuple(float(v) for v in cfg.get("latents_std", base.latents_std)))


WAN_VAE_PRESETS: dict[str, WanVAEConfig] = {
    "wan2.1": WanVAEConfig(),
    # The released Wan 2.2 VAE (Wan2.2_VAE.pth; Wan2.2-TI2V-5B-Diffusers vae/config.json).
    "wan2.2": WanVAEConfig(base_dim=160, decoder_base_dim=256, z_dim=48, is_residual=True, patch_size=2,
                           latents_mean=WAN22_LATENTS_MEAN, latents_std=WAN22_LATENTS_STD),
    "tiny": WanVAEConfig(base_dim=8, z_dim=4, dim_mult=(1, 2, 2), num_res_blocks=1, temporal_downsample=(True, True),
                         latents_mean=(0.1, -0.2, 0.3, 0.0), latents_std=(1.5, 0.5, 2.0, 1.0)),
    # Tests: the Wan 2.2 structure (patchified, residual levels, own decoder width), tiny.
    "tiny-2.2": WanVAEConfig(base_dim=8, decoder_base_dim=12, z_dim=6, dim_mult=(1, 2, 2), num_res_blocks=1,
                             temporal_downsample=(True, True), is_residual=True, patch_size=2,
                             latents_mean=(0.1, -0.2, 0.3, 0.0, 0.2, -0.1), latents_std=(1.5, 0.5, 2.0, 1.0, 0.8, 1.2)),
}


def wan_vae_config(preset: str, **overrides: Any) -> WanVAEConfig:
    """The preset's config with `overrides` applied; an unknown preset is a UserError."""
    if preset not in WAN_VAE_PRESETS:
        raise UserError(f"unknown Wan VAE preset '{preset}': {did_you_mean(preset, WAN_VAE_PRESETS)}")
    return replace(WAN_VAE_PRESETS[preset], **overrides)


# -- streaming ------------------------------------------------------------------------------------


@dataclass
class FeatureCache:
    """What each causal layer of one encode or decode call keeps between chunks (keyed by the layer).

    A fresh cache is made per call, so one loaded VAE serves concurrent calls."""

    frames: dict[int, torch.Tensor] = field(default_factory=dict)

    def run(self, conv: CausalConv3d, x: torch.Tensor) -> torch.Tensor:
        """conv(x) continuing the stream conv has seen in this call."""
        key = id(conv)
        past = self.frames.get(key)
        history = x if past is None else torch.cat([past, x], dim=2)
        self.frames[key] = history[:, :, -CACHE_FRAMES:].clone()
        return conv(x, past)

    def seen(self, layer: nn.Module) -> torch.Tensor | None:
        return self.frames.get(id(layer))

    def keep(self, layer: nn.Module, frames: torch.Tensor) -> None:
        self.frames[id(layer)] = frames


def _causal(conv: CausalConv3d, x: torch.Tensor, cache: FeatureCache | None) -> torch.Tensor:
    return conv(x) if cache is None else cache.run(conv, x)


def _causal_conv(in_ch: int, out_ch: int, kernel: int | tuple[int, int, int] = 3) -> CausalConv3d:
    return CausalConv3d(in_ch, out_ch, kernel, pad_mode="zeros")


# -- blocks ---------------------------------------------------------------------------------------


class ChannelRMSNorm(nn.Module):
    """x / rms over the channel axis (dim 1) * gamma: the release's `RMS_norm` (an L2 normalisation
    times sqrt(channels)); `gamma` is (C, 1, 1, 1) for volumes or (C, 1, 1) for frames, as released."""

    def __init__(self, dim: int, volume: bool = True):
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(dim, *((1, 1, 1) if volume else (1, 1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = x.dtype in (torch.float16, torch.bfloat16)
        return F.normalize(x.float() if low else x, dim=1).to(x.dtype) * self.scale * self.gamma


class WanResidualBlock(nn.Module):
    """norm1, SiLU, conv1 (causal 3x3x3), norm2, SiLU, conv2, plus conv_shortcut (1x1x1) when widths differ."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.norm1 = ChannelRMSNorm(in_dim)
        self.conv1 = _causal_conv(in_dim, out_dim)
        self.norm2 = ChannelRMSNorm(out_dim)
        self.conv2 = _causal_conv(out_dim, out_dim)
        self.conv_shortcut = _causal_conv(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        h = self.conv_shortcut(x)
        x = _causal(self.conv1, F.silu(self.norm1(x)), cache)
        x = _causal(self.conv2, F.silu(self.norm2(x)), cache)
        return x + h


class WanAttentionBlock(nn.Module):
    """One-head self-attention over the pixels of each frame (norm, to_qkv 1x1, attention, proj 1x1, residual)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = ChannelRMSNorm(dim, volume=False)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[2]
        h = to_frames(x)
        n, c, hh, ww = h.shape
        qkv = self.to_qkv(self.norm(h)).reshape(n, 1, 3 * c, hh * ww).transpose(-1, -2)
        q, k, v = qkv.chunk(3, dim=-1)
        out = attention(q.contiguous(), k.contiguous(), v.contiguous())
        out = self.proj(out.squeeze(1).transpose(1, 2).reshape(n, c, hh, ww))
        return x + to_volume(out, t)


class WanMidBlock(nn.Module):
    """resnets.0, attentions.0, resnets.1."""

    def __init__(self, dim: int):
        super().__init__()
        self.resnets = nn.ModuleList([WanResidualBlock(dim, dim), WanResidualBlock(dim, dim)])
        self.attentions = nn.ModuleList([WanAttentionBlock(dim)])

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        x = self.resnets[0](x, cache)
        return self.resnets[1](self.attentions[0](x), cache)


class NearestUpsample(nn.Upsample):
    """2x nearest-exact upsampling computed in float32 (bfloat16 nearest is not supported everywhere)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type_as(x)


class WanResample(nn.Module):
    """Halve ("down") or double ("up") H and W with a per-frame 2-D conv (`resample.1`); with `temporal`
    also halve time (a stride-2 causal conv after) or double it (a causal conv to 2x channels before,
    split into two frames). The first frame of a clip never passes the temporal conv: it stays one frame."""

    def __init__(self, dim: int, mode: str, temporal: bool, out_dim: int | None = None):
        super().__init__()
        self.mode, self.temporal = mode, temporal
        if mode == "up":  # Wan 2.1 halves the width here (out_dim None); Wan 2.2 keeps it
            self.resample = nn.Sequential(NearestUpsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                                          nn.Conv2d(dim, dim // 2 if out_dim is None else out_dim, 3, padding=1))
            if temporal:
                self.time_conv = _causal_conv(dim, dim * 2, (3, 1, 1))
        elif mode == "down":
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
            if temporal:
                self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), pad_mode="zeros")
        else:
            raise UserError(f"Wan resample mode must be 'up' or 'down', got '{mode}'")

    def _time_up(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        if cache.seen(self) is None:  # the clip's first frame: one frame out
            cache.keep(self, x[:, :, :0])
            return x
        b, c, t, h, w = x.shape
        x = cache.run(self.time_conv, x)
        return x.reshape(b, 2, c, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * t, h, w)

    def _time_down(self, x: torch.Tensor, cache: FeatureCache) -> torch.Tensor:
        last = cache.seen(self)
        cache.keep(self, x[:, :, -1:].clone())
        if last is None:  # the clip's first frame passes as it is
            return x
        return self.time_conv.conv(torch.cat([last, x], dim=2))  # windows (2i, 2i+1, 2i+2): no padding

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        if self.temporal and cache is None:
            raise UserError("the Wan VAE's temporal resamplers run on a stream: call encode()/decode(), "
                            "which pass a FeatureCache")
        if self.mode == "up" and self.temporal:
            x = self._time_up(x, cache)
        t = x.shape[2]
        x = to_volume(self.resample(to_frames(x)), t)
        if self.mode == "down" and self.temporal:
            x = self._time_down(x, cache)
        return x


class WanUpBlock(nn.Module):
    """resnets (num_res_blocks + 1) then upsamplers.0 (except the last level)."""

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, upsample: bool, temporal: bool):
        super().__init__()
        self.resnets = nn.ModuleList(WanResidualBlock(in_dim if i == 0 else out_dim, out_dim)
                                     for i in range(num_res_blocks + 1))
        self.upsamplers = nn.ModuleList([WanResample(out_dim, "up", temporal)]) if upsample else None

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x, cache)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, cache)
        return x


class WanEncoder3d(nn.Module):
    """Frames (B, 3, T, H, W) -> moments (B, 2 z_dim, 1 + (T-1)/4, H/8, W/8) (before quant_conv)."""

    def __init__(self, cfg: WanVAEConfig):
        super().__init__()
        dims = [cfg.base_dim * m for m in (1, *cfg.dim_mult)]
        self.conv_in = _causal_conv(cfg.network_channels, dims[0])
        blocks: list[nn.Module] = []
        last = len(cfg.dim_mult) - 1
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if cfg.is_residual:
                break
            for j in range(cfg.num_res_blocks):
                blocks.append(WanResidualBlock(in_dim if j == 0 else out_dim, out_dim))
            if i != last:
                blocks.append(WanResample(out_dim, "down", cfg.temporal_downsample[i]))
        self.down_blocks = residual_down_blocks(cfg, dims) if cfg.is_residual else nn.ModuleList(blocks)
        self.mid_block = WanMidBlock(dims[-1])
        self.norm_out = ChannelRMSNorm(dims[-1])
        self.conv_out = _causal_conv(dims[-1], 2 * cfg.z_dim)

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        x = _causal(self.conv_in, x, cache)
        for block in self.down_blocks:
            x = block(x, cache)
        x = self.mid_block(x, cache)
        return _causal(self.conv_out, F.silu(self.norm_out(x)), cache)


class WanDecoder3d(nn.Module):
    """Latents (B, z_dim, T', h, w) (after post_quant_conv) -> frames (B, 3, 1 + 4 (T'-1), 8h, 8w)."""

    def __init__(self, cfg: WanVAEConfig):
        super().__init__()
        mult = cfg.dim_mult
        dims = [cfg.decoder_dim * m for m in (mult[-1], *mult[::-1])]
        temporal_up = cfg.temporal_downsample[::-1]
        self.conv_in = _causal_conv(cfg.z_dim, dims[0])
        self.mid_block = WanMidBlock(dims[0])
        last = len(mult) - 1
        # Each 2.1 upsampler halves the width it hands on, so levels after the first start at in_dim / 2.
        self.up_blocks = residual_up_blocks(cfg, dims) if cfg.is_residual else nn.ModuleList(
            WanUpBlock(in_dim if i == 0 else in_dim // 2, out_dim, cfg.num_res_blocks, i != last,
                       temporal_up[i] if i != last else False)
            for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])))
        self.norm_out = ChannelRMSNorm(dims[-1])
        self.conv_out = _causal_conv(dims[-1], cfg.network_channels)

    def forward(self, x: torch.Tensor, cache: FeatureCache | None = None) -> torch.Tensor:
        x = _causal(self.conv_in, x, cache)
        x = self.mid_block(x, cache)
        for block in self.up_blocks:
            x = block(x, cache)
        return _causal(self.conv_out, F.silu(self.norm_out(x)), cache)


def _tiled_volume(fn, x: torch.Tensor, tile: int, overlap: int, factor: float, out_channels: int,
                  out_frames: int) -> torch.Tensor:
    """`fn` (a clip (B, C, T, h, w) -> (B, out_channels, out_frames, h*factor, w*factor)) over overlapping
    spatial tiles of x, blended with the image VAE's linear ramps (`utils.encoders.vae._tiled`): frames
    ride along the channel axis, so every tile runs through the whole clip with its own causal cache."""
    b, c, t = x.shape[:3]

    def flat(part: torch.Tensor) -> torch.Tensor:
        y = fn(part.unflatten(1, (c, t)))
        return y.flatten(1, 2)

    out = _tiled(flat, x.flatten(1, 2), tile, overlap, factor, out_channels * out_frames)
    return out.unflatten(1, (out_channels, out_frames))


class WanVAE(nn.Module):
    """The Wan 2.1 / 2.2 video VAE: `encode` (clip -> posterior), `decode` (latents -> clip in [-1, 1]),
    `normalize` / `denormalize` (raw <-> per-channel standardised latents, what the transformer sees)."""

    def __init__(self, cfg: WanVAEConfig | None = None):
        super().__init__()
        self.config = cfg = cfg or WanVAEConfig()
        self.encoder = WanEncoder3d(cfg)
        self.quant_conv = _causal_conv(2 * cfg.z_dim, 2 * cfg.z_dim, 1)
        self.post_quant_conv = _causal_conv(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = WanDecoder3d(cfg)
        self.register_buffer("latents_mean", torch.tensor(cfg.latents_mean).view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("latents_std", torch.tensor(cfg.latents_std).view(1, -1, 1, 1, 1), persistent=False)
        self.force_upcast = False
        self.tile_latent = 0  # 0: no tiling (see enable_tiling)
        self.tile_overlap = 0

    @property
    def dtype(self) -> torch.dtype:
        return self.quant_conv.conv.weight.dtype

    def latent_frames(self, frames: int) -> int:
        """Latent frames of a clip of `frames` frames (1 + (frames - 1) / temporal_ratio)."""
        return 1 + (frames - 1) // self.config.temporal_ratio

    def check_frames(self, frames: int) -> None:
        r = self.config.temporal_ratio
        if frames < 1 or (frames - 1) % r:
            below = max(1, 1 + r * ((frames - 1) // r))
            raise UserError(f"the Wan VAE takes 1 + {r}k frames (1, {1 + r}, {1 + 2 * r}, ...), got {frames}: "
                            f"use {below} or {below + r}")

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latents_mean.to(z)) / self.latents_std.to(z)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latents_std.to(z) + self.latents_mean.to(z)

    def encode(self, x: torch.Tensor, chunk_size: int | None = 4, tiled: bool | None = None) -> DiagonalGaussian:
        """Frames (B, C, 1 + 4k, H, W) in [-1, 1] -> the posterior over raw latents (B, z_dim, 1 + k, H/s, W/s)
        (s = spatial_ratio: 8 for Wan 2.1, 16 for Wan 2.2).
        The first frame is encoded alone, then `chunk_size` frames at a time (a multiple of the temporal
        ratio; None = all the rest at once): the moments are the same, memory is not. `tiled` (default:
        on after `enable_tiling`): overlapping spatial tiles blended over the overlap."""
        if x.ndim != 5:
            raise UserError(f"the Wan VAE encodes (batch, channels, frames, height, width), got shape {tuple(x.shape)}")
        self.check_frames(x.shape[2])
        s = self.config.spatial_ratio
        if x.shape[3] % s or x.shape[4] % s:
            raise UserError(f"the Wan VAE needs height and width divisible by {s}, got {x.shape[3]}x{x.shape[4]}: "
                            f"resize or crop the frames")
        r = self.config.temporal_ratio
        step = x.shape[2] if chunk_size is None else chunk_size
        if step % r and step < x.shape[2] - 1:
            raise UserError(f"Wan VAE encode chunk_size must be a multiple of {r}, got {chunk_size}")
        with upcast_fp16(self, self.force_upcast) as dtype:
            x = x.to(dtype)
            tile, overlap = self._tile_sizes(tiled)
            if tile and max(x.shape[-2:]) > tile * s:
                moments = _tiled_volume(lambda part: self._encode_stream(part, step), x, tile * s, overlap * s,
                                        1.0 / s, 2 * self.config.z_dim, self.latent_frames(x.shape[2]))
            else:
                moments = self._encode_stream(x, step)
        return DiagonalGaussian(moments)

    def _encode_stream(self, x: torch.Tensor, step: int) -> torch.Tensor:
        cache = FeatureCache()
        x = patchify(x, self.config.patch_size)
        outs = [self.encoder(x[:, :, :1], cache)]
        for start in range(1, x.shape[2], max(step, 1)):
            outs.append(self.encoder(x[:, :, start:start + step], cache))
        return self.quant_conv(torch.cat(outs, dim=2))

    def decode(self, z: torch.Tensor, chunk_size: int | None = 1, tiled: bool | None = None,
               progress: bool = False) -> torch.Tensor:
        """Raw latents (B, z_dim, T', h, w) -> frames (B, C, 1 + 4 (T'-1), s h, s w) clamped to [-1, 1].
        The first latent frame is decoded alone, then `chunk_size` latent frames at a time (None = the
        rest at once): the frames are the same; peak memory grows with the chunk. `tiled` (default: on
        after `enable_tiling`): overlapping spatial tiles, each decoded through the whole clip, blended
        over the overlap (peak memory of one tile; pixels near the seams differ a little). `progress`:
        a bar over the chunks (of every tile)."""
        if z.ndim != 5 or z.shape[1] != self.config.z_dim:
            raise UserError(f"the Wan VAE decodes (batch, {self.config.z_dim}, frames, height, width) latents, "
                            f"got shape {tuple(z.shape)}")
        if chunk_size is not None and chunk_size < 1:
            raise UserError(f"Wan VAE decode chunk_size must be >= 1 or None, got {chunk_size}")
        frames = 1 + self.config.temporal_ratio * (z.shape[2] - 1)
        step = max(z.shape[2] - 1, 1) if chunk_size is None else chunk_size
        tile, overlap = self._tile_sizes(tiled)
        tiles = len(_starts(z.shape[3], tile, overlap)) * len(_starts(z.shape[4], tile, overlap)) \
            if tile and max(z.shape[-2:]) > tile else 1
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=tiles * (1 + -(-(z.shape[2] - 1) // step)), desc="decoding", leave=False)
        try:
            with upcast_fp16(self, self.force_upcast) as dtype:
                z = z.to(dtype)
                if tiles > 1:
                    out = _tiled_volume(lambda part: self._decode_stream(part, step, bar), z, tile, overlap,
                                        self.config.spatial_ratio, self.config.in_channels, frames)
                else:
                    out = self._decode_stream(z, step, bar)
        finally:
            if bar is not None:
                bar.close()
        return out.clamp(-1.0, 1.0)

    def _decode_stream(self, z: torch.Tensor, step: int, bar: Any = None) -> torch.Tensor:
        cache = FeatureCache()
        x = self.post_quant_conv(z)
        outs = []
        for start in (0, *range(1, x.shape[2], step)):
            outs.append(self.decoder(x[:, :, start:start + 1 if start == 0 else start + step], cache))
            if bar is not None:
                bar.update(1)
        return unpatchify(torch.cat(outs, dim=2), self.config.patch_size)

    # -- tiling ---------------------------------------------------------------------------------

    def enable_tiling(self, tile_latent: int = 32, overlap_latent: int = 8) -> "WanVAE":
        """Encode and decode frames larger than `tile_latent` latent pixels in overlapping spatial tiles
        (sizes in latent pixels; the release's VAE: 32 = 256 frame pixels, as diffusers' default)."""
        if tile_latent < 1 or not 0 <= overlap_latent < tile_latent:
            raise UserError(f"Wan VAE tiles need tile >= 1 and 0 <= overlap < tile, got {tile_latent} and "
                            f"{overlap_latent}")
        self.tile_latent, self.tile_overlap = int(tile_latent), int(overlap_latent)
        return self

    def disable_tiling(self) -> "WanVAE":
        self.tile_latent = self.tile_overlap = 0
        return self

    def _tile_sizes(self, tiled: bool | None) -> tuple[int, int]:
        """(tile, overlap) in latent pixels for one call; (0, 0) = no tiling."""
        on = self.tile_latent > 0 if tiled is None else tiled
        if not on:
            return 0, 0
        tile = self.tile_latent or 32
        return tile, (self.tile_overlap if self.tile_latent else tile // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct frames through the posterior mean."""
        return self.decode(self.encode(x).mode())

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        subfolder: str | None = None) -> "WanVAE":
        """Load the official `Wan2.1_VAE.pth` / `Wan2.2_VAE.pth` / `.safetensors` (any prefix), a diffusers `vae/` folder
        (config.json + weights) or its safetensors, or a hub id; no source = random weights of `preset`."""
        from pathlib import Path

        from utils.encoders.wan_vae_convert import read_sizes, to_native
        from utils.torch_utils import local_seed, resolve_device, resolve_dtype
        from utils.weights import load_folder_state_dict, load_into, load_state_dict, resolve
        from utils.encoders.text import read_config

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        cfg = wan_vae_config(preset) if preset is not None else None
        if source is None:
            if cfg is None:
                raise UserError(f"WanVAE.from_pretrained needs a source or a preset ({', '.join(WAN_VAE_PRESETS)})")
            with local_seed(0):
                return cls(cfg).to(device=dev, dtype=dt).eval()
        local = Path(os.path.expanduser(str(source)))
        if not local.exists():
            local = resolve(str(source), allow_patterns=[f"{subfolder or 'vae'}/*", "*VAE*"])
        path = local / subfolder if subfolder else local
        if path.is_dir() and (path / "vae").is_dir() and not (path / "config.json").exists():
            path = path / "vae"
        if path.is_dir():
            config_file = path / "config.json"
            if config_file.exists():
                cfg = WanVAEConfig.from_diffusers(read_config(path))
            found = sorted(path.glob("Wan2.[12]_VAE.*")) if not config_file.exists() else []
            sd = load_state_dict(found[0], dtype=torch.float32) if found else \
                load_folder_state_dict(path, name="diffusion_pytorch_model", dtype=torch.float32)
        else:
            sd = load_state_dict(path, dtype=torch.float32)
        native = to_native(sd)
        if cfg is None:
            cfg = _config_of(read_sizes(native))
        with torch.device("meta"):
            model = cls(cfg)
        load_into(model, native, what="Wan VAE checkpoint")
        model.latents_mean = torch.tensor(model.config.latents_mean).view(1, -1, 1, 1, 1)
        model.latents_std = torch.tensor(model.config.latents_std).view(1, -1, 1, 1, 1)
        return model.to(device=dev, dtype=dt).eval()


def _config_of(sizes: dict) -> WanVAEConfig:
    """A single file stores no config: the preset whose structure the shapes show (for its latent statistics),
    else those sizes with Wan 2.1's statistics when the latent has its 16 channels (Wan 2.2's with its 48)."""
    for preset in WAN_VAE_PRESETS.values():
        if all(getattr(preset, k) == v for k, v in sizes.items()):
            return preset
    if sizes["z_dim"] == len(WAN21_LATENTS_MEAN):
        return WanVAEConfig(**sizes)
    if sizes["z_dim"] == len(WAN22_LATENTS_MEAN) and sizes.get("is_residual"):
        return WanVAEConfig(**sizes, latents_mean=WAN22_LATENTS_MEAN, latents_std=WAN22_LATENTS_STD)
    raise UserError(f"this Wan VAE file has {sizes['z_dim']} latent channels and no preset fits its shapes, so its "
                    "latent mean/std are unknown: load it from a diffusers folder (vae/config.json names them)")


__all__ = ["CACHE_FRAMES", "ChannelRMSNorm", "FeatureCache", "WAN_VAE_PRESETS", "WanAttentionBlock", "WanDecoder3d",
           "WanEncoder3d", "WanMidBlock", "WanResample", "WanResidualBlock", "WanUpBlock", "WanVAE", "WanVAEConfig",
           "wan_vae_config"]

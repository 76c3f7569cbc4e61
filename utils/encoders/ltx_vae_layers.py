"""The blocks of the LTX-Video VAE (diffusers' `AutoencoderKLLTXVideo` module names), and the
PixArt-style timestep embedder that the LTX VAE decoder and the LTX transformer both use.

    LTXTimestepEmbedder   256 sinusoidal features ([cos, sin], no shift) -> linear_1 -> SiLU -> linear_2
                          under `timestep_embedder.` (diffusers' PixArtAlphaCombinedTimestepSizeEmbeddings
                          without the size conditions)
    LTXConv3d             utils.nn.temporal's CausalConv3d (first frame repeated), or with the edge
                          frames repeated on both sides (non-causal); weights under `conv.`
    ResnetBlock3d         RMS norm (no gain) -> SiLU -> conv, twice, with an optional LayerNorm + 1x1x1
                          shortcut; optional per-channel noise injection and timestep shift/scale (0.9.1)
    Downsampler3d / Upsampler3d
                          space-to-depth / depth-to-space around a conv (0.9.1+ decoders; 0.9.5+ encoders)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from utils.nn.embeddings import timestep_embedding
from utils.nn.norms import rms_norm
from utils.nn.temporal import CausalConv3d


class _TimestepMLP(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class LTXTimestepEmbedder(nn.Module):
    """(N,) timesteps -> (N, dim): 256 sinusoidal features then a two-layer SiLU MLP."""

    freq_dim = 256

    def __init__(self, dim: int):
        super().__init__()
        self.timestep_embedder = _TimestepMLP(self.freq_dim, dim)

    def forward(self, t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        freq = timestep_embedding(t.flatten(), self.freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0.0)
        return self.timestep_embedder(freq.to(dtype or self.timestep_embedder.linear_1.weight.dtype))


def _channel_rms(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    # Pixel norm: RMS over channels at every (frame, row, col); no gain in any release.
    return rms_norm(x.movedim(1, -1), None, eps).movedim(-1, 1)


class LTXConv3d(CausalConv3d):
    """The shared causal conv (first frame repeated before the clip); with `causal=False` the edge
    frames are repeated on both sides instead (the LTX decoders up to 0.9.5 are not causal)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int | tuple = 1,
                 causal: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride, pad_mode="replicate")
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if self.causal or self.kernel_t == 1:
            return super().forward(x)
        k = (self.kernel_t - 1) // 2
        x = torch.cat([x[:, :, :1].expand(-1, -1, k, -1, -1), x, x[:, :, -1:].expand(-1, -1, k, -1, -1)], dim=2)
        return self.conv(x)


class ResnetBlock3d(nn.Module):
    """Two pixel-normed SiLU convs with a residual; shortcut LayerNorm + 1x1x1 conv when widths differ."""

    def __init__(self, in_channels: int, out_channels: int | None = None, eps: float = 1e-6, causal: bool = True,
                 inject_noise: bool = False, timestep_conditioning: bool = False):
        super().__init__()
        out_channels = out_channels or in_channels
        self.conv1 = LTXConv3d(in_channels, out_channels, 3, causal=causal)
        self.conv2 = LTXConv3d(out_channels, out_channels, 3, causal=causal)
        if in_channels != out_channels:
            self.norm3 = nn.LayerNorm(in_channels, eps=eps)
            self.conv_shortcut = LTXConv3d(in_channels, out_channels, 1, causal=causal)
        if inject_noise:
            self.per_channel_scale1 = nn.Parameter(torch.zeros(in_channels, 1, 1))
            self.per_channel_scale2 = nn.Parameter(torch.zeros(in_channels, 1, 1))
        if timestep_conditioning:
            self.scale_shift_table = nn.Parameter(torch.randn(4, in_channels) / in_channels ** 0.5)

    def _noise(self, h: torch.Tensor, scale: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        # One (H, W) noise map shared by all channels and frames, scaled per channel.
        noise = torch.randn(h.shape[-2:], generator=generator, device=h.device, dtype=h.dtype)
        return h + (noise[None] * scale)[None, :, None]

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        h = _channel_rms(x)
        if hasattr(self, "scale_shift_table"):
            mods = temb.unflatten(1, (4, -1)) + self.scale_shift_table[None, ..., None, None, None]
            shift1, scale1, shift2, scale2 = mods.unbind(1)
            h = h * (1 + scale1) + shift1
        h = self.conv1(F.silu(h))
        if hasattr(self, "per_channel_scale1"):
            h = self._noise(h, self.per_channel_scale1, generator)
        h = _channel_rms(h)
        if hasattr(self, "scale_shift_table"):
            h = h * (1 + scale2) + shift2
        h = self.conv2(F.silu(h))
        if hasattr(self, "per_channel_scale2"):
            h = self._noise(h, self.per_channel_scale2, generator)
        if hasattr(self, "conv_shortcut"):
            x = self.conv_shortcut(self.norm3(x.movedim(1, -1)).movedim(-1, 1))
        return h + x


def _space_to_depth(x: torch.Tensor, st: tuple[int, int, int]) -> torch.Tensor:
    # (B, C, F*st, H*sh, W*sw) -> (B, C*st*sh*sw, F, H, W), channel order (C, st, sh, sw).
    x = x.unflatten(4, (-1, st[2])).unflatten(3, (-1, st[1])).unflatten(2, (-1, st[0]))
    return x.permute(0, 1, 3, 5, 7, 2, 4, 6).flatten(1, 4)


def _depth_to_space(x: torch.Tensor, st: tuple[int, int, int]) -> torch.Tensor:
    # (B, C*st*sh*sw, F, H, W) -> (B, C, F*st, H*sh, W*sw), the inverse of _space_to_depth.
    b, _, f, h, w = x.shape
    x = x.reshape(b, -1, st[0], st[1], st[2], f, h, w)
    return x.permute(0, 1, 5, 2, 6, 3, 7, 4).flatten(6, 7).flatten(4, 5).flatten(2, 3)


class Downsampler3d(nn.Module):
    """Conv to out/prod(stride) channels then space-to-depth, plus a space-to-depth residual averaged
    over channel groups (the 0.9.5+ encoder)."""

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int, int], causal: bool = True):
        super().__init__()
        self.stride = stride
        n = stride[0] * stride[1] * stride[2]
        self.group_size = in_channels * n // out_channels
        self.conv = LTXConv3d(in_channels, out_channels // n, 3, causal=causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, :, : self.stride[0] - 1], x], dim=2)
        residual = _space_to_depth(x, self.stride).unflatten(1, (-1, self.group_size)).mean(dim=2)
        return _space_to_depth(self.conv(x), self.stride) + residual


class Upsampler3d(nn.Module):
    """Conv to in*prod(stride)/factor channels then depth-to-space (dropping the first stride_t - 1
    frames), with an optional depth-to-space residual repeated over channels (0.9.1+ decoders)."""

    def __init__(self, in_channels: int, stride: tuple[int, int, int] = (2, 2, 2), causal: bool = True,
                 residual: bool = False, upscale_factor: int = 1):
        super().__init__()
        self.stride, self.residual, self.upscale_factor = stride, residual, upscale_factor
        n = stride[0] * stride[1] * stride[2]
        self.conv = LTXConv3d(in_channels, in_channels * n // upscale_factor, 3, causal=causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.stride[0] * self.stride[1] * self.stride[2]
        out = _depth_to_space(self.conv(x), self.stride)[:, :, self.stride[0] - 1:]
        if self.residual:
            res = _depth_to_space(x, self.stride).repeat(1, n // self.upscale_factor, 1, 1, 1)
            out = out + res[:, :, self.stride[0] - 1:]
        return out


__all__ = ["LTXConv3d", "Downsampler3d", "LTXTimestepEmbedder", "ResnetBlock3d", "Upsampler3d"]

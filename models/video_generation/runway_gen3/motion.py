"""AnimateDiff motion modules (Guo et al. 2023, arXiv:2307.04725): temporal transformers for an image UNet.

A motion module sees a batch of frames (B*F, C, H, W) as H*W sequences of F tokens: GroupNorm over each
clip, a linear projection in, transformer blocks whose two attentions both attend over the frames (with
sinusoidal frame positions added before each), GEGLU feed-forward, a linear projection out, residual.
One module follows each ResBlock + SpatialTransformer of the UNet (AnimateDiff's `motion_layers_per_block`).

Parameter names are those of diffusers' `MotionAdapter` (`down_blocks.L.motion_modules.i`,
`mid_block.motion_modules.0`, `up_blocks.L.motion_modules.i`; inside: `norm`, `proj_in`,
`transformer_blocks.K.{norm1, attn1, norm2, attn2, norm3, ff, pos_embed}`, `proj_out`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from utils.errors import UserError
from utils.nn.transformer_blocks import CrossAttention, FeedForward


@dataclass(frozen=True)
class MotionAdapterConfig:
    """Sizes of a motion adapter (names follow diffusers' MotionAdapter config)."""

    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    """Widths of the UNet levels the modules sit in (SD 1.5's)."""
    motion_layers_per_block: int = 2
    """Motion modules per down level (the up levels have one more)."""
    motion_num_attention_heads: int = 8
    """Heads of every temporal attention (head size = width // heads)."""
    motion_norm_num_groups: int = 32
    """GroupNorm groups of each module's input norm."""
    motion_max_seq_length: int = 32
    """Frames the sinusoidal position table covers (AnimateDiff v2 / v3: 32)."""
    use_motion_mid_block: bool = True
    """A module in the middle block too (v2, v3)."""


class SinusoidalFramePositions(nn.Module):
    """Adds sin / cos features of the frame index (interleaved, base 10000) to frame tokens."""

    def __init__(self, dim: int, max_frames: int):
        super().__init__()
        position = torch.arange(max_frames, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        table = torch.zeros(1, max_frames, dim)
        table[0, :, 0::2] = torch.sin(position * freq)
        table[0, :, 1::2] = torch.cos(position * freq)
        self.register_buffer("pe", table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.pe.shape[1]:
            raise UserError(f"{x.shape[1]} frames is more than this motion adapter's {self.pe.shape[1]}: ask for "
                            "fewer frames")
        return x + self.pe[:, :x.shape[1]].to(x.dtype)


class TemporalTransformerBlock(nn.Module):
    """Two frame self-attentions (positions added before each) and a GEGLU feed-forward, pre-norm."""

    def __init__(self, dim: int, heads: int, max_frames: int):
        super().__init__()
        head_dim = dim // heads
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = CrossAttention(dim, dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = CrossAttention(dim, dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)
        self.pos_embed = SinusoidalFramePositions(dim, max_frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.pos_embed(self.norm1(x)))
        x = x + self.attn2(self.pos_embed(self.norm2(x)))
        return x + self.ff(self.norm3(x))


class MotionModule(nn.Module):
    """One temporal transformer over the frames of each pixel, residual (diffusers' AnimateDiffTransformer3D)."""

    def __init__(self, channels: int, heads: int, groups: int, max_frames: int, depth: int = 1):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            [TemporalTransformerBlock(channels, heads, max_frames) for _ in range(depth)])
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B*F, C, H, W) frames in, same shape out."""
        bf, c, h, w = x.shape
        if bf % num_frames:
            raise UserError(f"a batch of {bf} frames does not split into clips of {num_frames}")
        b = bf // num_frames
        clip = x.reshape(b, num_frames, c, h, w).permute(0, 2, 1, 3, 4)  # (B, C, F, H, W): norm per clip
        tokens = self.norm(clip).permute(0, 3, 4, 2, 1).reshape(b * h * w, num_frames, c)
        tokens = self.proj_in(tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens)
        out = self.proj_out(tokens).reshape(b, h, w, num_frames, c).permute(0, 3, 4, 1, 2).reshape(bf, c, h, w)
        return x + out


class _Level(nn.Module):
    def __init__(self, modules: list[MotionModule]):
        super().__init__()
        self.motion_modules = nn.ModuleList(modules)


class MotionAdapter(nn.Module):
    """The motion modules of every UNet level, in diffusers' MotionAdapter layout."""

    def __init__(self, config: MotionAdapterConfig | None = None):
        super().__init__()
        cfg = config or MotionAdapterConfig()
        self.config = cfg

        def module(ch: int) -> MotionModule:
            return MotionModule(ch, cfg.motion_num_attention_heads, cfg.motion_norm_num_groups,
                                cfg.motion_max_seq_length)

        chans = cfg.block_out_channels
        self.down_blocks = nn.ModuleList([_Level([module(ch) for _ in range(cfg.motion_layers_per_block)])
                                          for ch in chans])
        self.mid_block = _Level([module(chans[-1])]) if cfg.use_motion_mid_block else None
        self.up_blocks = nn.ModuleList([_Level([module(ch) for _ in range(cfg.motion_layers_per_block + 1)])
                                        for ch in reversed(chans)])


__all__ = ["MotionAdapter", "MotionAdapterConfig", "MotionModule", "SinusoidalFramePositions",
           "TemporalTransformerBlock"]

"""The blocks of the SVD UNet: SDXL's spatial blocks with a temporal twin and a learned mix after each.

Parameter names are those of generative-models' `VideoUNet` (what `svd.safetensors` stores):

    VideoResBlock              in_layers / emb_layers / out_layers / skip_connection   (the spatial ResBlock)
                               time_stack.{in_layers,emb_layers,out_layers}            (3-D convs over time)
                               time_mixer.mix_factor                                   (spatial/temporal mix)
    SpatialVideoTransformer    norm, proj_in, transformer_blocks.K, proj_out           (SDXL's spatial transformer)
                               time_stack.K (attention over frames), time_pos_embed.{0,2}, time_mixer.mix_factor

The spatial parts are SDXL's (`models.image_generation.stable_diffusion.unet`), the temporal parts
are the shared video blocks of `utils.nn.temporal`. Tensors are frame-batched: (B*T, C, H, W).
"""
from __future__ import annotations

import torch
from torch import nn

from models.image_generation.stable_diffusion.unet import BasicTransformerBlock, ResBlock
from utils.nn.norms import GroupNorm32
from utils.nn.temporal import (AlphaBlender, FramePositionEmbedding, TemporalResBlock, TemporalTransformerBlock,
                               to_frames, to_volume)


def set_group_norm_eps(module: nn.Module, eps: float) -> None:
    """Give every GroupNorm inside `module` the epsilon `eps`."""
    for m in module.modules():
        if isinstance(m, nn.GroupNorm):
            m.eps = eps


class VideoResBlock(ResBlock):
    """The spatial ResBlock on every frame, a temporal ResBlock over the frames, and their learned mix."""

    def __init__(self, channels: int, emb_dim: int, out_channels: int, groups: int, kernel_t: int = 3,
                 merge_factor: float = 0.5, eps: float = 1e-5):
        super().__init__(channels, emb_dim, out_channels, groups)
        self.time_stack = TemporalResBlock(out_channels, emb_dim, out_channels, kernel_t, groups, eps)
        self.time_mixer = AlphaBlender(merge_factor, "learned_with_images")
        set_group_norm_eps(self, eps)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, num_frames: int,  # type: ignore[override]
                image_only: torch.Tensor | None = None) -> torch.Tensor:
        spatial = super().forward(x, emb)
        b = spatial.shape[0] // num_frames
        temporal = self.time_stack(to_volume(spatial, num_frames), emb.reshape(b, num_frames, -1))
        return self.time_mixer(spatial, to_frames(temporal), image_only)


class SpatialVideoTransformer(nn.Module):
    """SDXL's spatial transformer per frame, each block followed by attention across the frames and a mix.

    The temporal blocks see the spatial tokens plus a learned embedding of the frame index and attend
    to the first frame's context (the image embedding); `time_mixer` blends them back.
    """

    def __init__(self, channels: int, heads: int, head_dim: int, depth: int, context_dim: int, groups: int,
                 merge_factor: float = 0.5):
        super().__init__()
        inner = heads * head_dim
        self.norm = GroupNorm32(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, head_dim, context_dim) for _ in range(depth)])
        self.time_stack = nn.ModuleList(
            [TemporalTransformerBlock(inner, heads, head_dim, context_dim, ff_in=True) for _ in range(depth)])
        self.time_pos_embed = FramePositionEmbedding(channels, 4 * channels)
        self.time_mixer = AlphaBlender(merge_factor, "learned_with_images")
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor, video_context: torch.Tensor, num_frames: int,
                image_only: torch.Tensor | None = None) -> torch.Tensor:
        """x (B*T, C, H, W); context (B*T, L, D) per frame; video_context (B, L, D), the first frame's."""
        bt, c, h, w = x.shape
        b = bt // num_frames
        tokens = self.proj_in(self.norm(x).permute(0, 2, 3, 1).reshape(bt, h * w, c))
        time_context = video_context.repeat_interleave(h * w, dim=0)  # (B*H*W, L, D): one per position
        frame_emb = self.time_pos_embed.embed(num_frames, b).to(tokens.dtype)[:, None, :]
        for block, time_block in zip(self.transformer_blocks, self.time_stack):
            tokens = block(tokens, context)
            mixed = time_block(tokens + frame_emb, num_frames, time_context)
            tokens = self.time_mixer(tokens, mixed, image_only)
        out = self.proj_out(tokens).reshape(bt, h, w, -1).permute(0, 3, 1, 2)
        return x + out


class VideoSequential(nn.Sequential):
    """A sequence of layers, each given what it needs (the video version of SDXL's TimestepEmbedSequential)."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor,  # type: ignore[override]
                video_context: torch.Tensor, num_frames: int, image_only: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, VideoResBlock):
                x = layer(x, emb, num_frames, image_only)
            elif isinstance(layer, SpatialVideoTransformer):
                x = layer(x, context, video_context, num_frames, image_only)
            else:
                x = layer(x)
        return x


__all__ = ["SpatialVideoTransformer", "VideoResBlock", "VideoSequential", "set_group_norm_eps"]

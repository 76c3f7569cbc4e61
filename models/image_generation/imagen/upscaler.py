"""Stage III of the cascade: the Stable Diffusion x4 upscaler's UNet, in the official (ldm) layout.

`stabilityai/stable-diffusion-x4-upscaler` is a latent diffusion model: a 4-channel latent (of a VAE
that downsamples by 4) is denoised conditioned on the low-resolution RGB image, concatenated as 3
more input channels after noise augmentation, whose level is embedded like a class label
(`label_emb`). The blocks are those of the Stable Diffusion UNet (`stable_diffusion.unet`: ResBlock,
SpatialTransformer with linear projections, the same key names); what differs is reused with small
subclasses here: a fixed 8 heads per attention (the head size grows with the width), and in the
first levels the first attention of each transformer block attends to the text instead of itself
(`disable_self_attentions` of x4-upscaling.yaml).

    time_embed.{0,2} / label_emb             timestep MLP / noise-level embedding (1000 x 4C)
    input_blocks / middle_block / output_blocks / out      as the SD UNet
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.image_generation.imagen.config import UpscalerUNetConfig
from models.image_generation.stable_diffusion.unet import (BasicTransformerBlock, CrossAttention, Downsample,
                                                           ResBlock, SpatialTransformer, TimestepEmbedSequential,
                                                           Upsample)
from utils.errors import UserError
from utils.nn import timestep_embedding
from utils.nn.norms import GroupNorm32


class CrossOnlyTransformerBlock(BasicTransformerBlock):
    """A transformer block whose first attention also attends to the text (no self-attention)."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int):
        super().__init__(dim, heads, head_dim, context_dim)
        self.attn1 = CrossAttention(dim, context_dim, heads, head_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x), context)
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


def spatial_transformer(channels: int, cfg: UpscalerUNetConfig, cross_only: bool) -> SpatialTransformer:
    heads = cfg.num_heads
    block = SpatialTransformer(channels, heads, channels // heads, 1, cfg.context_dim, cfg.norm_groups)
    if cross_only:
        inner = heads * (channels // heads)
        block.transformer_blocks = nn.ModuleList(
            [CrossOnlyTransformerBlock(inner, heads, channels // heads, cfg.context_dim)])
    return block


class UpscalerUNet(nn.Module):
    """The x4 upscaler's UNet: (noisy latent, noised low-resolution image), t, text, noise level -> v."""

    def __init__(self, config: UpscalerUNetConfig | str = "sd-x4-upscaler"):
        super().__init__()
        cfg = UpscalerUNetConfig.preset(config) if isinstance(config, str) else config
        cfg.check()
        self.config = cfg
        mc, ted, g = cfg.model_channels, cfg.time_embed_dim, cfg.norm_groups
        self.time_embed = nn.Sequential(nn.Linear(mc, ted), nn.SiLU(), nn.Linear(ted, ted))
        self.label_emb = nn.Embedding(cfg.num_classes, ted)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(cfg.in_channels, mc, 3, padding=1))])
        skips, ch = [mc], mc
        levels = len(cfg.channel_mult)
        for level, width in enumerate(cfg.level_channels):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, ted, width, g)]
                ch = width
                if cfg.transformer_depth[level]:
                    layers.append(spatial_transformer(ch, cfg, cfg.only_cross_attention[level]))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skips.append(ch)
            if level != levels - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                skips.append(ch)
        self.middle_block = TimestepEmbedSequential(ResBlock(ch, ted, ch, g), spatial_transformer(ch, cfg, False),
                                                    ResBlock(ch, ted, ch, g))
        self.output_blocks = nn.ModuleList()
        for level in reversed(range(levels)):
            width = cfg.level_channels[level]
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + skips.pop(), ted, width, g)]
                ch = width
                if cfg.transformer_depth[level]:
                    layers.append(spatial_transformer(ch, cfg, cfg.only_cross_attention[level]))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(g, ch), nn.SiLU(), nn.Conv2d(ch, cfg.out_channels, 3, padding=1))

    @property
    def dtype(self) -> torch.dtype:
        return self.out[2].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.out[2].weight.device

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                noise_level: torch.Tensor) -> torch.Tensor:
        """x (B, 7, h, w): the noisy latent and the noised low-resolution image; context (B, 77, 1024)."""
        d = self.config.downscale
        if x.shape[-1] % d or x.shape[-2] % d:
            raise UserError(f"latent size {x.shape[-2]}x{x.shape[-1]} is not a multiple of {d}: use an input image "
                            f"whose sides are multiples of {d}")
        b, dt = x.shape[0], self.dtype
        t = torch.as_tensor(timesteps, device=self.device)
        t = t.expand(b) if t.ndim == 0 else t
        emb = self.time_embed(timestep_embedding(t, self.config.model_channels, flip_sin_to_cos=True,
                                                 downscale_freq_shift=0).to(dt))
        level = torch.as_tensor(noise_level, device=self.device).long()
        emb = emb + self.label_emb(level.expand(b) if level.ndim == 0 else level).to(dt)
        context = context.to(dt)
        h = x.to(dt)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb, context)
            skips.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context)
        norm, _, conv = self.out
        return conv(F.silu(norm(h)))


__all__ = ["CrossOnlyTransformerBlock", "UpscalerUNet"]

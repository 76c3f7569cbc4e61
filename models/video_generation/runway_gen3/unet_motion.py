"""An image UNet (the stable_diffusion package's SD 1.5 UNet, or SDXL's) with motion modules inserted: AnimateDiff.

Frames travel as a batch (B*F, C, H, W) through the frozen image layers; a motion module follows each
ResBlock (+ SpatialTransformer) of every down and up level, before any Upsample, and sits between the
middle block's transformer and its second ResBlock (the places diffusers' UNetMotionModel uses). The text
context and the timestep are shared by the frames of a clip.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.image_generation.stable_diffusion.unet import ResBlock, SDXLUNet, SpatialTransformer, Upsample, embed
from models.video_generation.runway_gen3.motion import MotionAdapter
from utils.errors import UserError


class MotionUNet(nn.Module):
    """`unet` (SD 1.x / 2.x or SDXL shaped, frozen) + `adapter` (its motion modules, made for that UNet)."""

    def __init__(self, unet: SDXLUNet, adapter: MotionAdapter):
        super().__init__()
        cfg = unet.config
        if tuple(cfg.level_channels) != tuple(adapter.config.block_out_channels):
            raise UserError(f"this motion adapter is for UNet widths {adapter.config.block_out_channels}, the UNet has "
                            f"{cfg.level_channels}: use an adapter made for this image model (SD 1.5 vs SDXL)")
        if adapter.config.motion_layers_per_block != cfg.num_res_blocks:
            raise UserError(f"this motion adapter has {adapter.config.motion_layers_per_block} modules per level, the "
                            f"UNet {cfg.num_res_blocks} ResBlocks: they do not fit together")
        self.unet, self.adapter = unet, adapter
        self._down, self._up = [], []  # the motion module after each input / output block (None: none)
        level, i = 0, 0
        for block in unet.input_blocks[1:]:
            if isinstance(block[0], ResBlock):
                self._down.append(adapter.down_blocks[level].motion_modules[i])
                i += 1
            else:  # a downsampler closes the level
                self._down.append(None)
                level, i = level + 1, 0
        per_level = cfg.num_res_blocks + 1
        for n in range(len(unet.output_blocks)):
            self._up.append(adapter.up_blocks[n // per_level].motion_modules[n % per_level])

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                down_residuals: Sequence[torch.Tensor] | None = None,
                mid_residual: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F, C, H, W) noisy latents, (B,) times, (B, L, D) text -> (B, F, C, H, W) prediction.
        `y`: (B, adm_in_channels) the vector SDXL's UNet conditions on (pooled text + size embeddings), shared by
        the frames of a clip; None for SD 1.x / 2.x.
        `down_residuals` / `mid_residual`: a ControlNet's outputs per frame ((B*F, ...) each, already scaled),
        added to the skips (after the motion modules) and to the middle block's output, as UNetMotionModel does."""
        b, f = x.shape[:2]
        unet = self.unet
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(b)
        dtype = unet.dtype
        emb = embed(unet.config, unet.time_embed, unet.label_emb, timesteps, y, b, dtype).repeat_interleave(f, dim=0)
        context = context.to(dtype).repeat_interleave(f, dim=0)
        h = unet.input_blocks[0](x.reshape(b * f, *x.shape[2:]).to(dtype), emb, context)
        skips = [h]
        for block, motion in zip(unet.input_blocks[1:], self._down):
            h = block(h, emb, context)
            if motion is not None:
                h = motion(h, f)
            skips.append(h)
        if down_residuals is not None:
            if len(down_residuals) != len(skips):
                raise UserError(f"{len(down_residuals)} ControlNet residuals for {len(skips)} input blocks: the "
                                "ControlNet does not fit this UNet (SD 1.5 vs SDXL?)")
            skips = [s + r.to(s.dtype) for s, r in zip(skips, down_residuals)]
        res1, attn, res2 = unet.middle_block
        h = attn(res1(h, emb), context)
        if self.adapter.mid_block is not None:
            h = self.adapter.mid_block.motion_modules[0](h, f)
        h = res2(h, emb)
        if mid_residual is not None:
            h = h + mid_residual.to(h.dtype)
        for block, motion in zip(unet.output_blocks, self._up):
            h = torch.cat([h, skips.pop()], dim=1)
            for layer in block:
                if isinstance(layer, Upsample):
                    h = layer(motion(h, f))
                    motion = None
                elif isinstance(layer, ResBlock):
                    h = layer(h, emb)
                elif isinstance(layer, SpatialTransformer):
                    h = layer(h, context)
            if motion is not None:
                h = motion(h, f)
        norm, _, conv = unet.out
        out = conv(F.silu(norm(h)))
        return out.reshape(b, f, *out.shape[1:])


__all__ = ["MotionUNet"]

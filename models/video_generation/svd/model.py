"""The SVD UNet (generative-models' `VideoUNet`) in the layout of Stability's official release.

Parameter names are those of `svd.safetensors` / `svd_xt.safetensors` without the
`model.diffusion_model.` prefix; the block numbering is SDXL's:

    time_embed.{0,2}            timestep MLP (sinusoidal features of the EDM c_noise = log(sigma) / 4)
    label_emb.0.{0,2}           MLP on the vector y: Fourier features of fps - 1, motion bucket, noise augmentation
    input_blocks.0.0            conv_in (8 channels: noisy latents + the conditioning frame's latents)
    input_blocks.N.0            VideoResBlock (spatial ResBlock + time_stack + time_mixer)
    input_blocks.N.1            SpatialVideoTransformer (spatial blocks + time_stack + time_pos_embed + time_mixer)
    input_blocks.N.0.op         stride-2 downsampling conv
    middle_block.{0,1,2}        VideoResBlock, SpatialVideoTransformer, VideoResBlock
    output_blocks.N.{0,1,2}     VideoResBlock, SpatialVideoTransformer (when the level attends), Upsample (`.conv`)
    out.{0,2}                   GroupNorm, conv_out

`forward(x, timesteps, context, y)` takes videos (B, T, C, H, W), one time, image embedding (B, L, D)
and vector (B, adm) per video, and returns (B, T, out_channels, H, W).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.image_generation.stable_diffusion.unet import Downsample, Upsample
from models.video_generation.svd.config import SVDUNetConfig
from models.video_generation.svd.layers import SpatialVideoTransformer, VideoResBlock, VideoSequential
from utils.errors import UserError
from utils.nn import timestep_embedding
from utils.nn.norms import GroupNorm32


class SVDUNet(nn.Module):
    """The spatio-temporal UNet of Stable Video Diffusion (v-prediction over 4-channel latents)."""

    def __init__(self, config: SVDUNetConfig | str = "svd"):
        super().__init__()
        cfg = SVDUNetConfig.preset(config) if isinstance(config, str) else config
        cfg.check()
        self.config = cfg
        mc, ted, groups = cfg.model_channels, cfg.time_embed_dim, cfg.norm_groups
        self.time_embed = nn.Sequential(nn.Linear(mc, ted), nn.SiLU(), nn.Linear(ted, ted))
        self.label_emb = nn.Sequential(nn.Sequential(nn.Linear(cfg.adm_in_channels, ted), nn.SiLU(),
                                                     nn.Linear(ted, ted)))

        def res(cin: int, cout: int, part: str, attends: bool) -> VideoResBlock:
            return VideoResBlock(cin, ted, cout, groups, cfg.video_kernel_t, cfg.merge_factor,
                                 cfg.resnet_eps_for(part, attends))

        def transformer(ch: int, depth: int) -> SpatialVideoTransformer:
            return SpatialVideoTransformer(ch, ch // cfg.head_dim, cfg.head_dim, depth, cfg.context_dim, groups,
                                           cfg.merge_factor)

        self.input_blocks = nn.ModuleList([VideoSequential(nn.Conv2d(cfg.in_channels, mc, 3, padding=1))])
        skip_channels = [mc]
        ch = mc
        levels = len(cfg.channel_mult)
        for level, mult in enumerate(cfg.channel_mult):
            out_ch = mc * mult
            attends = cfg.transformer_depth[level] > 0
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [res(ch, out_ch, "down", attends)]
                ch = out_ch
                if attends:
                    layers.append(transformer(ch, cfg.transformer_depth[level]))
                self.input_blocks.append(VideoSequential(*layers))
                skip_channels.append(ch)
            if level != levels - 1:
                self.input_blocks.append(VideoSequential(Downsample(ch)))
                skip_channels.append(ch)

        self.middle_block = VideoSequential(res(ch, ch, "mid", True), transformer(ch, cfg.transformer_depth_middle),
                                            res(ch, ch, "mid", True))

        self.output_blocks = nn.ModuleList()
        for level in reversed(range(levels)):
            out_ch = mc * cfg.channel_mult[level]
            attends = cfg.transformer_depth[level] > 0
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), out_ch, "up", attends)]
                ch = out_ch
                if attends:
                    layers.append(transformer(ch, cfg.transformer_depth[level]))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                self.output_blocks.append(VideoSequential(*layers))

        self.out = nn.Sequential(GroupNorm32(groups, ch), nn.SiLU(), nn.Conv2d(ch, cfg.out_channels, 3, padding=1))
        self.gradient_checkpointing = False
        """Recompute each block's activations in the backward pass (training only): far less memory."""

    @property
    def dtype(self) -> torch.dtype:
        return self.out[2].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.out[2].weight.device

    def enable_gradient_checkpointing(self, on: bool = True) -> "SVDUNet":
        self.gradient_checkpointing = bool(on)
        return self

    def _run(self, block: VideoSequential, *args) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor, y: torch.Tensor,
                image_only: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, C, H, W); timesteps (B,) or a scalar (EDM c_noise); context (B, L, context_dim);
        y (B, adm_in_channels); image_only (B, T), nonzero for frames trained as still images."""
        if x.ndim != 5:
            raise UserError(f"the SVD UNet denoises videos (batch, frames, channels, H, W), got shape {tuple(x.shape)}")
        b, t, c, height, width = x.shape
        d = self.config.downscale
        if height % d or width % d:
            raise UserError(f"latent size {height}x{width} is not a multiple of {d}: use a video size that is a "
                            f"multiple of {8 * d}")
        if c != self.config.in_channels:
            raise UserError(f"the SVD UNet takes {self.config.in_channels} channels (latents + conditioning), got {c}")
        timesteps = torch.as_tensor(timesteps, device=x.device)
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(b)
        dtype = self.dtype
        t_emb = timestep_embedding(timesteps, self.config.model_channels, flip_sin_to_cos=True,
                                   downscale_freq_shift=0).to(dtype)
        emb = (self.time_embed(t_emb) + self.label_emb(y.to(dtype))).repeat_interleave(t, dim=0)
        video_context = context.to(dtype)
        frame_context = video_context.repeat_interleave(t, dim=0)
        args = (emb, frame_context, video_context, t, image_only)
        h = x.reshape(b * t, c, height, width).to(dtype)
        skips = []
        for block in self.input_blocks:
            h = self._run(block, h, *args)
            skips.append(h)
        h = self._run(self.middle_block, h, *args)
        for block in self.output_blocks:
            h = self._run(block, torch.cat([h, skips.pop()], dim=1), *args)
        norm, _, conv = self.out
        out = conv(F.silu(norm(h), inplace=not torch.is_grad_enabled()))
        return out.reshape(b, t, -1, height, width)


__all__ = ["SVDUNet"]

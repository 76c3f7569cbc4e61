"""The SDXL UNet in the layout of Stability's official release (the `sgm` code base).

Parameter names are those of `sd_xl_base_1.0.safetensors` / `sd_xl_refiner_1.0.safetensors` without
their `model.diffusion_model.` prefix:

    time_embed.{0,2}            timestep MLP (sinusoidal features of width `model_channels`)
    label_emb.0.{0,2}           MLP on the "vector" conditioning y (pooled text + micro-conditioning)
    input_blocks.0.0            conv_in
    input_blocks.N.0            ResBlock (in_layers / emb_layers / out_layers / skip_connection)
    input_blocks.N.1            SpatialTransformer (norm, proj_in, transformer_blocks.K, proj_out)
    input_blocks.N.0.op         the stride-2 downsampling conv closing a level
    middle_block.{0,1,2}        ResBlock, SpatialTransformer, ResBlock
    output_blocks.N.{0,1,2}     ResBlock, SpatialTransformer (when the level attends), Upsample (`.conv`)
    out.{0,2}                   GroupNorm, conv_out

`forward(x, timesteps, context, y)` follows the release: x the (noisy) latents, timesteps the DDPM
times, context the concatenated penultimate hidden states of the text encoders, y the vector built by
`conditioning.sdxl_vector` (pooled bigG embedding + Fourier features of sizes, crop, aesthetic score).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import UserError, did_you_mean
from utils.nn import timestep_embedding
from utils.nn.norms import GroupNorm32
from utils.nn.transformer_blocks import CrossAttention, FeedForward
from utils.nn.memory_format import to_channels_last


@dataclass(frozen=True)
class UNetConfig:
    """Sizes of an SDXL-family UNet (names follow the release's yaml)."""

    in_channels: int = 4
    """Latent channels in (4; 9 for an inpainting UNet)."""
    out_channels: int = 4
    """Predicted noise channels."""
    model_channels: int = 320
    """Width of the full-resolution level; the timestep embedding is 4x as wide."""
    channel_mult: tuple[int, ...] = (1, 2, 4)
    """Level widths as multiples of model_channels; each level but the last halves the resolution."""
    num_res_blocks: int = 2
    """ResBlocks per input level (the output side has one more)."""
    transformer_depth: tuple[int, ...] = (0, 2, 10)
    """Transformer blocks per SpatialTransformer at each level; 0 = that level has no attention."""
    transformer_depth_middle: int = 10
    """Transformer blocks in the middle block's SpatialTransformer."""
    head_dim: int = 64
    """Channels per attention head (`num_head_channels`); heads = level channels // head_dim. Not stored in
    the weights (64 in every SDXL and SD 2.x release). Ignored when `num_heads` is set."""
    num_heads: int = 0
    """A fixed number of heads at every level (`num_heads`: 8 in SD 1.x, whose head size is then
    width // 8); 0 = heads follow `head_dim`. Not stored in the weights."""
    linear_projection: bool = True
    """SpatialTransformer proj_in / proj_out as linear layers on tokens (SDXL, SD 2.x:
    `use_linear_in_transformer`) or as 1x1 convolutions (SD 1.x)."""
    context_dim: int = 2048
    """Width of the text tokens: CLIP-L 768 + bigG 1280 (base), bigG 1280 alone (refiner)."""
    adm_in_channels: int = 2816
    """Width of y: 1280 pooled + 6 x 256 (base) or 1280 + 5 x 256 (refiner); 0 = no vector conditioning
    (SD 1.x / 2.x: no `label_emb`)."""
    norm_groups: int = 32
    """GroupNorm groups (not stored in the weights: 32 in every release)."""
    micro_conditioning: str = "base"
    """'base': original size, crop, target size; 'refiner': original size, crop, aesthetic score."""
    addition_time_embed_dim: int = 256
    """Fourier features per micro-conditioning number (not stored in the weights: 256 in every release)."""

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels

    @property
    def level_channels(self) -> tuple[int, ...]:
        return tuple(self.model_channels * m for m in self.channel_mult)

    def heads_at(self, channels: int) -> tuple[int, int]:
        """(heads, head size) of a SpatialTransformer of this width."""
        if self.num_heads:
            return self.num_heads, channels // self.num_heads
        return channels // self.head_dim, self.head_dim

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    @classmethod
    def preset(cls, name: str) -> "UNetConfig":
        if name not in UNET_PRESETS:
            raise UserError(f"unknown SDXL UNet preset '{name}': {did_you_mean(name, UNET_PRESETS)}")
        return UNET_PRESETS[name]

    def with_(self, **changes) -> "UNetConfig":
        return replace(self, **changes)

    def check(self) -> None:
        """A one-line UserError for sizes no UNet can be built with (instead of a torch error)."""
        levels = len(self.channel_mult)
        if len(self.transformer_depth) != levels:
            raise UserError(f"transformer_depth {self.transformer_depth} needs one entry per level of channel_mult "
                            f"{self.channel_mult}")
        widths = (self.model_channels, *self.level_channels)
        if self.norm_groups <= 0 or any(w % self.norm_groups for w in widths):
            raise UserError(f"norm_groups {self.norm_groups} does not divide every width of this UNet {widths}: pass "
                            "the norm_groups it was trained with")
        attending = [self.level_channels[i] for i in range(levels) if self.transformer_depth[i]]
        attending.append(self.level_channels[-1])  # the middle block
        if self.num_heads < 0 or (self.num_heads and any(w % self.num_heads for w in attending)):
            raise UserError(f"num_heads {self.num_heads} does not divide the widths of the attending levels "
                            f"{attending}: pass the head count the UNet was trained with")
        if not self.num_heads and (self.head_dim <= 0 or any(w % self.head_dim for w in attending)):
            raise UserError(f"head_dim {self.head_dim} does not divide the widths of the attending levels {attending}: "
                            "pass the head size the UNet was trained with")
        if self.micro_conditioning not in ("base", "refiner"):
            raise UserError(f"micro_conditioning '{self.micro_conditioning}' is neither 'base' nor 'refiner'")


UNET_PRESETS: dict[str, UNetConfig] = {
    # sd_xl_base.yaml: 2.6 B parameters, attention at 1/2 and 1/4 resolution with 2 and 10 blocks.
    "sdxl-base": UNetConfig(),
    # sd_xl_refiner.yaml: wider, four levels, 4 blocks at the two attending levels, bigG context only.
    "sdxl-refiner": UNetConfig(model_channels=384, channel_mult=(1, 2, 4, 4), transformer_depth=(0, 4, 4, 0),
                               transformer_depth_middle=4, context_dim=1280, adm_in_channels=2560,
                               micro_conditioning="refiner"),
    # Tests and offline runs: two levels, 32/64 channels, 8 groups; fits the tiny CLIP-L (32) + bigG (40) encoders.
    "tiny": UNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, transformer_depth=(1, 1),
                       transformer_depth_middle=1, head_dim=8, context_dim=72, adm_in_channels=32 + 6 * 8,
                       norm_groups=8, addition_time_embed_dim=8),
    # v1-inference.yaml (SD 1.x): four levels, one 1x1-conv-projected transformer block at the first three,
    # 8 heads everywhere, CLIP-L context, no vector conditioning.
    "sd15": UNetConfig(channel_mult=(1, 2, 4, 4), transformer_depth=(1, 1, 1, 0), transformer_depth_middle=1,
                       num_heads=8, linear_projection=False, context_dim=768, adm_in_channels=0),
    # v2-inference(-v).yaml (SD 2.x): as SD 1.x with 64-channel heads, linear projections, OpenCLIP-H context.
    "sd21": UNetConfig(channel_mult=(1, 2, 4, 4), transformer_depth=(1, 1, 1, 0), transformer_depth_middle=1,
                       head_dim=64, context_dim=1024, adm_in_channels=0),
    # Tests: the SD 1.x / 2.x shapes at 32/64 channels (three levels, the last without attention).
    "tiny-sd15": UNetConfig(model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, transformer_depth=(1, 1, 0),
                            transformer_depth_middle=1, num_heads=4, linear_projection=False, context_dim=32,
                            adm_in_channels=0, norm_groups=8),
    "tiny-sd21": UNetConfig(model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, transformer_depth=(1, 1, 0),
                            transformer_depth_middle=1, head_dim=8, context_dim=32, adm_in_channels=0, norm_groups=8),
}


# -- building blocks -----------------------------------------------------------------------------


def _inference() -> bool:
    # No graph is recorded: activations may be overwritten in place (saves an allocation and a pass
    # over memory per op; the values are those of the out-of-place ops).
    return not torch.is_grad_enabled()


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, add the projected timestep embedding, GroupNorm-SiLU-conv, residual."""

    def __init__(self, channels: int, emb_dim: int, out_channels: int, groups: int):
        super().__init__()
        self.in_layers = nn.Sequential(GroupNorm32(groups, channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(groups, out_channels), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        fast = _inference()
        norm1, _, conv1 = self.in_layers
        norm2, _, _, conv2 = self.out_layers  # the Dropout(0.0) at index 2 is the identity
        h = conv1(F.silu(norm1(x), inplace=fast))
        e = self.emb_layers(emb)[:, :, None, None].to(h.dtype)
        h = h.add_(e) if fast else h + e
        h = conv2(F.silu(norm2(h), inplace=fast))
        skip = self.skip_connection(x)
        return h.add_(skip) if fast else skip + h


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class BasicTransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention to the text, GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int):
        super().__init__()
        self.attn1 = CrossAttention(dim, dim, heads, head_dim)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, context_dim, heads, head_dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        if _inference():  # residual adds into the fresh branch outputs (a + b == b + a exactly)
            x = self.attn1(self.norm1(x)).add_(x)
            x = self.attn2(self.norm2(x), context).add_(x)
            return self.ff(self.norm3(x)).add_(x)
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Flatten the feature map to tokens, run `depth` transformer blocks, project back, residual.

    SDXL and SD 2.x project in and out with linear layers (`use_linear_in_transformer`), on tokens;
    SD 1.x with 1x1 convolutions, on the feature map.
    """

    def __init__(self, channels: int, heads: int, head_dim: int, depth: int, context_dim: int, groups: int,
                 linear: bool = True):
        super().__init__()
        inner = heads * head_dim
        self.linear = linear
        self.norm = GroupNorm32(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner) if linear else nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, head_dim, context_dim) for _ in range(depth)])
        self.proj_out = nn.Linear(inner, channels) if linear else nn.Conv2d(inner, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        if not self.linear:
            return self._forward_conv(x, context)
        b, c, h, w = x.shape
        # (B, HW, C) tokens; a view, free of copies, when x is channels-last.
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c)
        tokens = self.proj_in(tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        out = self.proj_out(tokens).reshape(b, h, w, c).permute(0, 3, 1, 2)  # channels-last memory
        if _inference() and x.is_contiguous(memory_format=torch.channels_last):
            return out.add_(x)
        return x + out  # takes x's memory format

    def _forward_conv(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        inner = self.proj_in.out_channels
        tokens = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, h * w, inner)
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        return x + self.proj_out(tokens.reshape(b, h, w, inner).permute(0, 3, 1, 2))


class TimestepEmbedSequential(nn.Sequential):
    """A sequence of layers, each given what it needs: ResBlocks the embedding, transformers the text."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


# -- the encoder half (shared with the ControlNet, which copies it) ------------------------------


def _transformer(cfg: UNetConfig, ch: int, depth: int) -> SpatialTransformer:
    heads, head_dim = cfg.heads_at(ch)
    return SpatialTransformer(ch, heads, head_dim, depth, cfg.context_dim, cfg.norm_groups, cfg.linear_projection)


def build_embeddings(cfg: UNetConfig) -> tuple[nn.Sequential, nn.Sequential | None]:
    """`time_embed` (timestep MLP) and `label_emb` (MLP on the vector y; None without vector conditioning)."""
    mc, ted = cfg.model_channels, cfg.time_embed_dim
    time_embed = nn.Sequential(nn.Linear(mc, ted), nn.SiLU(), nn.Linear(ted, ted))
    label_emb = (nn.Sequential(nn.Sequential(nn.Linear(cfg.adm_in_channels, ted), nn.SiLU(), nn.Linear(ted, ted)))
                 if cfg.adm_in_channels else None)
    return time_embed, label_emb


def build_encoder(cfg: UNetConfig) -> tuple[nn.ModuleList, list[int], TimestepEmbedSequential]:
    """`input_blocks`, the width of each of their outputs (the skips), and `middle_block`."""
    mc, ted, groups = cfg.model_channels, cfg.time_embed_dim, cfg.norm_groups
    input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(cfg.in_channels, mc, 3, padding=1))])
    skip_channels = [mc]
    ch = mc
    levels = len(cfg.channel_mult)
    for level, mult in enumerate(cfg.channel_mult):
        out_ch = mc * mult
        for _ in range(cfg.num_res_blocks):
            layers: list[nn.Module] = [ResBlock(ch, ted, out_ch, groups)]
            ch = out_ch
            if cfg.transformer_depth[level] > 0:
                layers.append(_transformer(cfg, ch, cfg.transformer_depth[level]))
            input_blocks.append(TimestepEmbedSequential(*layers))
            skip_channels.append(ch)
        if level != levels - 1:
            input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
            skip_channels.append(ch)
    middle_block = TimestepEmbedSequential(ResBlock(ch, ted, ch, groups),
                                           _transformer(cfg, ch, cfg.transformer_depth_middle),
                                           ResBlock(ch, ted, ch, groups))
    return input_blocks, skip_channels, middle_block


def embed(cfg: UNetConfig, time_embed: nn.Module, label_emb: nn.Module | None, timesteps: torch.Tensor,
          y: torch.Tensor | None, batch: int, dtype: torch.dtype) -> torch.Tensor:
    """The embedding every ResBlock adds: timestep MLP (+ the vector y's MLP for SDXL)."""
    if timesteps.ndim == 0:
        timesteps = timesteps.expand(batch)
    t_emb = timestep_embedding(timesteps, cfg.model_channels, flip_sin_to_cos=True, downscale_freq_shift=0).to(dtype)
    emb = time_embed(t_emb)
    if label_emb is not None:
        if y is None:
            raise UserError("this UNet conditions on a vector y (SDXL): pass y")
        emb = emb + label_emb(y.to(dtype))
    return emb


def check_latent_size(cfg: UNetConfig, x: torch.Tensor) -> None:
    d = cfg.downscale
    if x.shape[-1] % d or x.shape[-2] % d:
        raise UserError(f"latent size {x.shape[-2]}x{x.shape[-1]} is not a multiple of {d}: "
                        f"use an image size that is a multiple of {8 * d}")


# -- the model ------------------------------------------------------------------------------------


class SDXLUNet(nn.Module):
    """The SDXL base / refiner UNet, and the SD 1.x / 2.x UNets (presets sd15, sd21: no vector
    conditioning; SD 1.x with 1x1-conv projections and 8 heads). Epsilon or v prediction over latents."""

    def __init__(self, config: UNetConfig | str = "sdxl-base"):
        super().__init__()
        cfg = UNetConfig.preset(config) if isinstance(config, str) else config
        cfg.check()
        self.config = cfg
        mc, ted, groups = cfg.model_channels, cfg.time_embed_dim, cfg.norm_groups
        self.time_embed, self.label_emb = build_embeddings(cfg)
        self.input_blocks, skip_channels, self.middle_block = build_encoder(cfg)
        ch = cfg.level_channels[-1]
        levels = len(cfg.channel_mult)
        transformer = partial(_transformer, cfg)

        self.output_blocks = nn.ModuleList()
        for level in reversed(range(levels)):
            out_ch = mc * cfg.channel_mult[level]
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), ted, out_ch, groups)]
                ch = out_ch
                if cfg.transformer_depth[level] > 0:
                    layers.append(transformer(ch, cfg.transformer_depth[level]))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(GroupNorm32(groups, ch), nn.SiLU(), nn.Conv2d(ch, cfg.out_channels, 3, padding=1))
        self.channels_last: bool | None = None
        """Run in channels-last memory (None: on CPU only, where oneDNN's convolutions are faster with it and
        the transformers' token reshapes become free views)."""

    @property
    def dtype(self) -> torch.dtype:
        return self.out[2].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.out[2].weight.device

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                y: torch.Tensor | None = None, down_residuals: Sequence[torch.Tensor] | None = None,
                mid_residual: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) latents, (B,) times, (B, L, context_dim) text, (B, adm_in_channels) vector (None
        for SD 1.x / 2.x, which have none). `down_residuals` (one per input block) and `mid_residual`: a
        ControlNet's outputs (`ControlNet.forward`, already scaled), added to the skips and to the middle
        block's output."""
        check_latent_size(self.config, x)
        dtype = self.dtype
        emb = embed(self.config, self.time_embed, self.label_emb, timesteps, y, x.shape[0], dtype)
        h = self._memory_format(x.to(dtype))
        context = context.to(dtype)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb, context)
            skips.append(h)
        if down_residuals is not None:
            if len(down_residuals) != len(skips):
                raise UserError(f"{len(down_residuals)} down residuals for {len(skips)} input blocks: the ControlNet "
                                "does not fit this UNet (SD 1.5 vs SDXL?)")
            skips = [s + r.to(dtype) for s, r in zip(skips, down_residuals)]
        h = self.middle_block(h, emb, context)
        if mid_residual is not None:
            h = h + mid_residual.to(dtype)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context)
        norm, _, conv = self.out
        return conv(F.silu(norm(h), inplace=_inference())).contiguous()

    def _memory_format(self, x: torch.Tensor) -> torch.Tensor:
        return to_channels_last(self, x, self.channels_last, self.out[2].weight)


__all__ = ["SDXLUNet", "UNetConfig", "UNET_PRESETS", "build_embeddings", "build_encoder", "check_latent_size", "embed"]

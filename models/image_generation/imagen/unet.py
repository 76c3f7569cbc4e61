"""The DeepFloyd IF pixel UNet (stages I and II), in the layout of DeepFloyd's release.

A guided-diffusion UNet (Dhariwal & Nichol 2021) conditioned on frozen T5-XXL features the way
Imagen describes (Saharia et al. 2022, sec. 2.2 and appendix F): the text is pooled by attention into
the timestep embedding, and projected to key/value tokens that every attention block attends to
together with the image tokens. Parameter names are those of DeepFloyd's checkpoints:

    time_embed.{0,2}                 timestep MLP on sinusoidal features of width model_channels
    aug_proj.{0,2}                   (super-resolution) MLP on the noise-augmentation level
    encoder_proj                     text width -> encoder_channels (absent when equal)
    encoder_pooling.{0,1,2,3}        LayerNorm, attention pooling, Linear to the embedding, LayerNorm
    input_blocks.0.0                 conv_in
    input_blocks.N.0                 ResBlock: in_layers.{0,2}, emb_layers.1, out_layers.{0,3}, skip_connection
    input_blocks.N.1                 AttentionBlock: norm, qkv (1x1 conv, per-head [q k v]), encoder_kv,
                                     norm_encoder, proj_out
    input_blocks.N.0 (level end)     the ResBlock that downsamples (average pooling inside)
    middle_block.{0,1,2}             ResBlock, AttentionBlock, ResBlock
    output_blocks.N.{0,1,2}          ResBlock on (x, skip), AttentionBlock, upsampling ResBlock
    out.{0,2}                        GroupNorm, conv_out (noise and variance: 2 x the image channels)

ResBlocks use scale-shift conditioning (`use_scale_shift_norm`); stage II also applies the activation
once to the summed embedding (`efficient_activation`) and scales every ResBlock output by 0.7071.
`models.image_generation.imagen.convert` maps diffusers' UNet2DConditionModel (IF configs) onto this.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.image_generation.imagen.config import IFUNetConfig
from utils.errors import UserError
from utils.nn import attention, timestep_embedding
from utils.nn.norms import GroupNorm32


def _act(name: str) -> nn.Module:
    return nn.GELU() if name == "gelu" else nn.SiLU()


class ResBlock(nn.Module):
    """Norm-act-(resample)-conv, scale-shift by the embedding, norm-act-conv, (scaled) residual."""

    def __init__(self, channels: int, emb_dim: int, out_channels: int, cfg: IFUNetConfig, resample: str | None = None):
        super().__init__()
        g, eps = cfg.norm_groups, cfg.norm_eps
        self.resample = resample
        self.skip_scale = cfg.skip_scale
        self.in_layers = nn.Sequential(GroupNorm32(g, channels, eps=eps), _act(cfg.activation),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.Identity() if cfg.efficient_activation else _act(cfg.activation),
                                        nn.Linear(emb_dim, 2 * out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(g, out_channels, eps=eps), _act(cfg.activation), nn.Dropout(0.0),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        norm1, act1, conv1 = self.in_layers
        h = conv1(self._resample(act1(norm1(x))))
        x = self._resample(x)
        scale, shift = self.emb_layers(emb).to(h.dtype)[:, :, None, None].chunk(2, dim=1)
        norm2, act2, _, conv2 = self.out_layers  # index 2: Dropout(0.0)
        h = conv2(act2(norm2(h) * (1 + scale) + shift))
        out = self.skip_connection(x) + h
        return out * self.skip_scale if self.skip_scale != 1.0 else out


class AttentionBlock(nn.Module):
    """Multi-head attention of the image tokens over [text tokens; image tokens] (or the text alone)."""

    def __init__(self, channels: int, cfg: IFUNetConfig):
        super().__init__()
        self.heads = channels // cfg.head_channels
        self.only_cross = cfg.only_cross_attention
        self.norm = GroupNorm32(cfg.norm_groups, channels, eps=cfg.norm_eps)
        self.qkv = nn.Conv1d(channels, channels if self.only_cross else 3 * channels, 1)
        self.encoder_kv = nn.Conv1d(cfg.encoder_channels, 2 * channels, 1)
        self.norm_encoder = GroupNorm32(cfg.encoder_norm_groups, cfg.encoder_channels, eps=cfg.norm_eps)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W); text (B, encoder_channels, L) (channels first, as the release keeps it)."""
        b, c, h, w = x.shape
        heads = self.heads
        qkv = self.qkv(self.norm(x).reshape(b, c, h * w))
        per_head = qkv.reshape(b, heads, -1, h * w)  # per head: [q; k; v] (or q alone), d rows each
        d = c // heads
        q = per_head[:, :, :d]
        ekv = self.encoder_kv(self.norm_encoder(text)).reshape(b, heads, 2 * d, -1)
        k, v = ekv[:, :, :d], ekv[:, :, d:]
        if not self.only_cross:
            k = torch.cat([k, per_head[:, :, d:2 * d]], dim=-1)
            v = torch.cat([v, per_head[:, :, 2 * d:]], dim=-1)
        out = attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))  # (B, heads, HW, d)
        out = self.proj_out(out.transpose(-1, -2).reshape(b, c, h * w))
        return x + out.reshape(b, c, h, w)


class AttentionPooling(nn.Module):
    """One query (the mean token + a learned position) attends over [query; tokens]; its output is the pool."""

    def __init__(self, heads: int, dim: int):
        super().__init__()
        self.heads = heads
        self.positional_embedding = nn.Parameter(torch.randn(1, dim) / dim ** 0.5)
        self.k_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, dim = x.shape
        cls = x.mean(dim=1, keepdim=True) + self.positional_embedding.to(x.dtype)
        tokens = torch.cat([cls, x], dim=1)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], self.heads, dim // self.heads).transpose(1, 2)

        out = attention(split(self.q_proj(cls)), split(self.k_proj(tokens)), split(self.v_proj(tokens)))
        return out.transpose(1, 2).reshape(b, dim)


class TimestepEmbedSequential(nn.Sequential):
    """ResBlocks get the embedding, attention blocks the text."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, text: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, AttentionBlock):
                x = layer(x, text)
            else:
                x = layer(x)
        return x


class IFUNet(nn.Module):
    """DeepFloyd IF stage I (64 px from text) or stage II (super-resolution) UNet; also Imagen's Efficient U-Net."""

    def __init__(self, config: IFUNetConfig | str = "if-i-xl"):
        super().__init__()
        cfg = IFUNetConfig.preset(config) if isinstance(config, str) else config
        cfg.check()
        self.config = cfg
        mc, ted, act = cfg.model_channels, cfg.time_embed_dim, cfg.activation
        self.time_embed = nn.Sequential(nn.Linear(mc, ted), _act(act), nn.Linear(ted, ted))
        if cfg.super_resolution:
            self.aug_proj = nn.Sequential(nn.Linear(mc, ted), _act(act), nn.Linear(ted, ted))
        if cfg.encoder_dim != cfg.encoder_channels:
            self.encoder_proj = nn.Linear(cfg.encoder_dim, cfg.encoder_channels)
        self.encoder_pooling = nn.Sequential(nn.LayerNorm(cfg.encoder_dim),
                                             AttentionPooling(cfg.att_pool_heads, cfg.encoder_dim),
                                             nn.Linear(cfg.encoder_dim, ted), nn.LayerNorm(ted))
        self.activation_layer = _act(act) if cfg.efficient_activation else nn.Identity()

        widths = cfg.level_channels
        first = widths[0]
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(cfg.in_channels, first, 3, padding=1))])
        self.skip_out: list[bool] = [not cfg.efficient]
        """Per input block: its output is a skip connection (every block; the efficient order: a level's last)."""
        skips, ch = [first], first
        levels = cfg.levels

        def res(cin: int, cout: int, resample: str | None = None) -> ResBlock:
            return ResBlock(cin, ted, cout, cfg, resample)

        for level, width in enumerate(widths):
            blocks: list[TimestepEmbedSequential] = []
            if cfg.efficient and level:
                blocks.append(TimestepEmbedSequential(res(ch, ch, "down")))
            for _ in range(cfg.num_res_blocks[level]):
                layers: list[nn.Module] = [res(ch, width)]
                ch = width
                if cfg.attention[level]:
                    layers.append(AttentionBlock(ch, cfg))
                blocks.append(TimestepEmbedSequential(*layers))
            if not cfg.efficient and level != levels - 1:
                blocks.append(TimestepEmbedSequential(res(ch, ch, "down")))
            for i, block in enumerate(blocks):
                self.input_blocks.append(block)
                emits = (i == len(blocks) - 1) if cfg.efficient else True
                self.skip_out.append(emits)
                if emits:
                    skips.append(ch)
        if cfg.efficient:
            skips = skips[1:]  # conv_in's output is not a skip in the efficient order

        self.middle_block = TimestepEmbedSequential(res(ch, ch), AttentionBlock(ch, cfg), res(ch, ch))

        self.output_blocks = nn.ModuleList()
        self.skip_in: list[bool] = []
        for level in reversed(range(levels)):
            width = widths[level]
            n = cfg.num_res_blocks[level] if cfg.efficient else cfg.num_res_blocks[level] + 1
            for i in range(n):
                takes = (i == 0) if cfg.efficient else True
                cin = ch + (skips.pop() if takes else 0)
                layers = [res(cin, width)]
                ch = width
                if cfg.attention[level]:
                    layers.append(AttentionBlock(ch, cfg))
                if level and i == n - 1:
                    layers.append(res(ch, ch, "up"))
                self.output_blocks.append(TimestepEmbedSequential(*layers))
                self.skip_in.append(takes)

        self.out = nn.Sequential(GroupNorm32(cfg.norm_groups, ch, eps=cfg.norm_eps), _act(act),
                                 nn.Conv2d(first, cfg.out_channels, 3, padding=1))

    @property
    def dtype(self) -> torch.dtype:
        return self.out[2].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.out[2].weight.device

    def _temb(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        t = torch.as_tensor(t, device=self.device)
        if t.ndim == 0:
            t = t.expand(batch)
        return timestep_embedding(t, self.config.model_channels, flip_sin_to_cos=True,
                                  downscale_freq_shift=0).to(self.dtype)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor,
                noise_level: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, in_channels, H, W) (super-resolution: the noisy image and the noised, upscaled low-resolution
        one); timesteps (B,); text (B, L, encoder_dim) T5 features; noise_level (B,) the augmentation level."""
        cfg = self.config
        d = cfg.downscale
        if x.shape[-1] % d or x.shape[-2] % d:
            raise UserError(f"image size {x.shape[-2]}x{x.shape[-1]} is not a multiple of {d}: use a size that is")
        b, dt = x.shape[0], self.dtype
        text = text.to(dt)
        emb = self.time_embed(self._temb(timesteps, b))
        if cfg.super_resolution:
            if noise_level is None:
                raise UserError("a super-resolution IF UNet needs the noise_level of its low-resolution input")
            emb = emb + self.aug_proj(self._temb(noise_level, b))
        emb = emb + self.encoder_pooling(text).to(emb.dtype)
        emb = self.activation_layer(emb)
        tokens = self.encoder_proj(text) if hasattr(self, "encoder_proj") else text
        tokens = tokens.transpose(1, 2)  # (B, C, L)
        h = x.to(dt)
        skips = []
        for block, emits in zip(self.input_blocks, self.skip_out):
            h = block(h, emb, tokens)
            if emits:
                skips.append(h)
        h = self.middle_block(h, emb, tokens)
        for block, takes in zip(self.output_blocks, self.skip_in):
            if takes:
                h = torch.cat([h, skips.pop()], dim=1)
            h = block(h, emb, tokens)
        return self.out(h)


__all__ = ["AttentionBlock", "AttentionPooling", "IFUNet", "ResBlock"]

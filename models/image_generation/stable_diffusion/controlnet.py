"""ControlNet for the SD 1.x / 2.x and SDXL UNets (Zhang, Rao & Agrawala, 2023), in the official layout.

A trainable copy of the UNet's encoder half (`input_blocks`, `middle_block`, the same blocks as
`unet.py`, built by the same functions) reads the noisy latents plus an embedded control image (edges,
depth, pose...). After each input block and after the middle block, a zero-initialised 1x1 convolution
turns its features into a residual; the UNet adds those to its skips and to its middle output. At
initialisation every residual is zero, so the frozen UNet is untouched until the copy learns.

Parameter names are those of lllyasviel's ControlNet 1.0 / 1.1 releases (`control_v11p_sd15_canny.pth`)
without their `control_model.` prefix:

    time_embed.{0,2}, label_emb.0.{0,2}    as in the UNet (label_emb: SDXL only)
    input_hint_block.{0,2,...,2n}          the control image embedding: 3x3 convolutions with SiLU between,
                                           stride 2 at each width change, the last one zero-initialised
    input_blocks.N, middle_block           the UNet encoder's copy
    zero_convs.N.0                         1x1 convolution on input block N's output -> skip residual N
    middle_block_out.0                     1x1 convolution on the middle block's output -> middle residual

`ControlNet(...)(x, t, context, y, hint, scale)` returns `ControlResiduals(down, mid)`, already scaled by
the conditioning scale; `unet(x, t, context, y, down_residuals=r.down, mid_residual=r.mid)` takes them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple, Sequence

import torch
from torch import nn

from models.image_generation.stable_diffusion.unet import (TimestepEmbedSequential, UNetConfig, build_embeddings,
                                                           build_encoder, check_latent_size, embed)
from utils.errors import UserError, did_you_mean


@dataclass(frozen=True)
class ControlNetConfig:
    """Sizes of a ControlNet: the UNet it copies, and the control image embedding."""

    unet: UNetConfig = field(default_factory=lambda: UNetConfig.preset("sd15"))
    """The UNet whose encoder is copied (its in_channels, widths, depths, heads, context, vector y)."""
    hint_channels: int = 3
    """Channels of the control image (RGB)."""
    hint_block_channels: tuple[int, ...] = (16, 32, 96, 256)
    """Widths of the control image embedding; each width after the first starts with a stride-2
    convolution, so the image is 2 ** (len - 1) times the latent size (8 = the VAE's factor)."""

    @property
    def hint_downscale(self) -> int:
        return 2 ** (len(self.hint_block_channels) - 1)

    @classmethod
    def preset(cls, name: str) -> "ControlNetConfig":
        if name not in CONTROLNET_PRESETS:
            raise UserError(f"unknown ControlNet preset '{name}': {did_you_mean(name, CONTROLNET_PRESETS)}")
        return CONTROLNET_PRESETS[name]

    def with_(self, **changes) -> "ControlNetConfig":
        return replace(self, **changes)


CONTROLNET_PRESETS: dict[str, ControlNetConfig] = {
    # lllyasviel's ControlNet 1.0 / 1.1 for SD 1.5 (cldm_v15.yaml): the SD 1.5 encoder.
    "sd15": ControlNetConfig(UNetConfig.preset("sd15")),
    # SD 2.1 ControlNets (cldm_v21.yaml, community releases).
    "sd21": ControlNetConfig(UNetConfig.preset("sd21")),
    # diffusers' SDXL releases (controlnet-canny-sdxl-1.0, -depth-): the SDXL base encoder.
    "sdxl": ControlNetConfig(UNetConfig.preset("sdxl-base")),
    # Tests: the encoders of the tiny UNets.
    "tiny-sd15": ControlNetConfig(UNetConfig.preset("tiny-sd15")),
    "tiny": ControlNetConfig(UNetConfig.preset("tiny")),
}


class ControlResiduals(NamedTuple):
    """What a ControlNet adds to the UNet: one residual per input block, and one after the middle block."""

    down: list[torch.Tensor]
    mid: torch.Tensor

    def unet_kwargs(self) -> dict:
        """The keyword arguments of `SDXLUNet.forward` that carry these residuals."""
        return {"down_residuals": self.down, "mid_residual": self.mid}


def combine(residuals: Sequence[ControlResiduals]) -> ControlResiduals:
    """Several ControlNets at once (Multi-ControlNet): their residuals add."""
    first, *rest = residuals
    down, mid = list(first.down), first.mid
    for r in rest:
        down = [a + b for a, b in zip(down, r.down)]
        mid = mid + r.mid
    return ControlResiduals(down, mid)


def _zero_conv(channels: int) -> TimestepEmbedSequential:
    conv = nn.Conv2d(channels, channels, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return TimestepEmbedSequential(conv)


class HintEmbedding(nn.Sequential):
    """The control image to latent resolution: conv-SiLU pairs, stride 2 at each new width, zero-init conv out."""

    def __init__(self, hint_channels: int, widths: Sequence[int], out_channels: int):
        layers: list[nn.Module] = [nn.Conv2d(hint_channels, widths[0], 3, padding=1), nn.SiLU()]
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(a, a, 3, padding=1), nn.SiLU(), nn.Conv2d(a, b, 3, padding=1, stride=2), nn.SiLU()]
        out = nn.Conv2d(widths[-1], out_channels, 3, padding=1)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        layers.append(out)
        super().__init__(*layers)


class ControlNet(nn.Module):
    """The encoder copy with zero convolutions and the control image embedding (SD 1.x / 2.x or SDXL)."""

    def __init__(self, config: ControlNetConfig | str = "sd15"):
        super().__init__()
        cfg = ControlNetConfig.preset(config) if isinstance(config, str) else config
        cfg.unet.check()
        if not cfg.hint_block_channels:
            raise UserError("hint_block_channels must name at least one width")
        self.config = cfg
        ucfg = cfg.unet
        self.time_embed, self.label_emb = build_embeddings(ucfg)
        self.input_hint_block = HintEmbedding(cfg.hint_channels, cfg.hint_block_channels, ucfg.model_channels)
        self.input_blocks, skip_channels, self.middle_block = build_encoder(ucfg)
        self.zero_convs = nn.ModuleList([_zero_conv(ch) for ch in skip_channels])
        self.middle_block_out = _zero_conv(ucfg.level_channels[-1])

    @property
    def dtype(self) -> torch.dtype:
        return self.middle_block_out[0].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.middle_block_out[0].weight.device

    def check_fits(self, unet_config: UNetConfig) -> None:
        """A one-line UserError when this ControlNet was made for another UNet (SD 1.5 vs SDXL...)."""
        mine = self.config.unet
        same = (mine.level_channels == unet_config.level_channels and mine.num_res_blocks == unet_config.num_res_blocks
                and mine.context_dim == unet_config.context_dim and mine.adm_in_channels == unet_config.adm_in_channels)
        if not same:
            raise UserError(f"this ControlNet was made for another UNet (widths {mine.level_channels}, text width "
                            f"{mine.context_dim}; the model's: {unet_config.level_channels}, "
                            f"{unet_config.context_dim}): pass a ControlNet for this model (SD 1.5 vs SDXL)")

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor, y: torch.Tensor | None,
                hint: torch.Tensor, scale: float = 1.0) -> ControlResiduals:
        """(B, C, h, w) noisy latents, (B,) times, text, vector y (SDXL; None for SD 1.x), (B, 3, H, W)
        control image in [0, 1] at H = h * hint_downscale; residuals multiplied by `scale`."""
        ucfg = self.config.unet
        check_latent_size(ucfg, x)
        d = self.config.hint_downscale
        if hint.shape[-2:] != (x.shape[-2] * d, x.shape[-1] * d):
            raise UserError(f"control image of {hint.shape[-2]}x{hint.shape[-1]} for latents of "
                            f"{x.shape[-2]}x{x.shape[-1]}: it must be {d}x the latent size (the output image size)")
        dtype = self.dtype
        emb = embed(ucfg, self.time_embed, self.label_emb, timesteps, y, x.shape[0], dtype)
        context = context.to(dtype)
        h = x.to(dtype)
        guide = self.input_hint_block(hint.to(dtype))
        if guide.shape[0] != h.shape[0]:  # one control image for the batch, or per image: repeated for the CFG halves
            if h.shape[0] % guide.shape[0]:
                raise UserError(f"{hint.shape[0]} control images for a batch of {h.shape[0]}: give one, or one per "
                                "image")
            guide = guide.repeat(h.shape[0] // guide.shape[0], 1, 1, 1)
        down = []
        for i, (block, zero) in enumerate(zip(self.input_blocks, self.zero_convs)):
            h = block(h, emb, context)
            if i == 0:  # the embedded control image joins after conv_in
                h = h + guide
            down.append(zero(h, emb, context) * scale)
        h = self.middle_block(h, emb, context)
        return ControlResiduals(down, self.middle_block_out(h, emb, context) * scale)


__all__ = ["CONTROLNET_PRESETS", "ControlNet", "ControlNetConfig", "ControlResiduals", "HintEmbedding", "combine"]

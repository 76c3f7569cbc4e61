"""Sizes of the cascade's networks: the IF pixel UNets (stage I and II, the efficient U-Net option) and the
Stable Diffusion x4 upscaler (stage III), with their named presets.

IF stage I preset widths come from DeepFloyd's release configs (IF-I-XL: 704 channels, 1-2-3-4,
three ResBlocks a level, 4.3B parameters; IF-I-L 320 and IF-I-M 192 give the published 0.9B and
0.4B). The stage II structure (five levels with 2-2-3-5-5 ResBlocks, cross-attention only at the
two lowest levels, the noise level embedded as a timestep, residuals scaled by 1/sqrt(2)) follows
diffusers' IF conversion script; its widths (IF-II-L 160, IF-II-M 96 channels, 1-2-4-6-8) are
fitted to the published 1.2B and 450M parameter counts because the release's config.yml could not
be read offline. Loaded weights never depend on them: a diffusers folder brings its config.json and
an official file its shapes (`convert.infer_if_config`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from utils.errors import UserError, did_you_mean


def _per_level(value: int | tuple[int, ...], levels: int, what: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * levels
    if len(value) != levels:
        raise UserError(f"{what} {value} needs one entry per level ({levels})")
    return tuple(value)


@dataclass(frozen=True)
class IFUNetConfig:
    """A DeepFloyd IF UNet (guided-diffusion ResBlocks, text attention and attention pooling; official names)."""

    in_channels: int = 3
    """Image channels in (6 for super-resolution: the noisy image and the upscaled low-resolution one)."""
    out_channels: int = 6
    """Predicted noise (3) and the learned variance fraction (3)."""
    model_channels: int = 704
    """Width of the full-resolution level; level widths are multiples of it."""
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    """Level widths as multiples of model_channels; each level but the last halves the resolution."""
    num_res_blocks: tuple[int, ...] = (3, 3, 3, 3)
    """ResBlocks per down level (the up levels have one more)."""
    attention: tuple[bool, ...] = (False, True, True, True)
    """Which levels attend (to themselves and the text); the middle block always does."""
    only_cross_attention: bool = False
    """Attention blocks attend to the text alone (stage II: `disable_self_attentions`)."""
    head_channels: int = 64
    """Channels per attention head (`num_head_channels`)."""
    encoder_dim: int = 4096
    """Width of the text features (T5-XXL)."""
    encoder_channels: int = 2816
    """Width the text is projected to for attention (`encoder_proj`); equal to encoder_dim: no projection."""
    att_pool_heads: int = 64
    """Heads of the attention pooling of the text into the time embedding."""
    activation: str = "gelu"
    """Nonlinearity of the ResBlocks and MLPs ('gelu' in every IF release, 'silu' for others)."""
    efficient_activation: bool = False
    """Apply the activation once to the summed embedding (stage II) instead of in each ResBlock's emb_layers."""
    skip_scale: float = 1.0
    """Each ResBlock's output is scaled by this (stage II: 0.7071, the 1/sqrt(2) of Imagen's efficient U-Net)."""
    super_resolution: bool = False
    """Embed the noise-augmentation level of the low-resolution input (`aug_proj`)."""
    norm_groups: int = 32
    """GroupNorm groups (not stored in the weights)."""
    norm_eps: float = 1e-5
    """GroupNorm epsilon."""
    image_size: int = 64
    """The resolution it was trained at (the default output size)."""
    encoder_norm_groups: int = 32
    """GroupNorm groups over the projected text channels (32 in the releases and in diffusers, whatever
    norm_groups is)."""
    efficient: bool = False
    """Imagen's Efficient U-Net block order (Saharia et al. 2022, appendix F, fig. A.30-A.31): a down level
    is [resample, ResBlocks, attention] and passes one skip connection, its output, to the matching up level,
    which is [ResBlocks on (x, skip), attention, resample]; the IF releases keep guided diffusion's order
    (resample last, one skip per block). An architecture option of the same code: no weights exist."""

    def __post_init__(self) -> None:
        levels = len(self.channel_mult)
        object.__setattr__(self, "num_res_blocks", _per_level(self.num_res_blocks, levels, "num_res_blocks"))
        if len(self.attention) != levels:
            raise UserError(f"attention {self.attention} needs one entry per level of channel_mult {self.channel_mult}")

    @property
    def levels(self) -> int:
        return len(self.channel_mult)

    @property
    def level_channels(self) -> tuple[int, ...]:
        return tuple(self.model_channels * m for m in self.channel_mult)

    @property
    def time_embed_dim(self) -> int:
        return self.model_channels * max(self.channel_mult)

    @property
    def downscale(self) -> int:
        return 2 ** (self.levels - 1)

    @property
    def sample_channels(self) -> int:
        """Channels of the image it denoises (half the input for super-resolution)."""
        return self.in_channels // 2 if self.super_resolution else self.in_channels

    def with_(self, **changes) -> "IFUNetConfig":
        return replace(self, **changes)

    @classmethod
    def preset(cls, name: str) -> "IFUNetConfig":
        if name not in IF_UNET_PRESETS:
            raise UserError(f"unknown IF UNet preset '{name}': {did_you_mean(name, IF_UNET_PRESETS)}")
        return IF_UNET_PRESETS[name]

    def check(self) -> None:
        """A one-line UserError for sizes no UNet can be built with."""
        widths = (self.model_channels, *self.level_channels)
        if any(w % self.norm_groups for w in widths):
            raise UserError(f"norm_groups {self.norm_groups} does not divide every width {widths}")
        attending = [self.level_channels[i] for i in range(self.levels) if self.attention[i]] + [self.level_channels[-1]]
        if any(w % self.head_channels for w in attending):
            raise UserError(f"head_channels {self.head_channels} does not divide the attending widths {attending}")
        if self.encoder_dim % self.att_pool_heads:
            raise UserError(f"att_pool_heads {self.att_pool_heads} does not divide encoder_dim {self.encoder_dim}")
        if self.activation not in ("gelu", "silu"):
            raise UserError(f"activation '{self.activation}' is neither 'gelu' nor 'silu'")


def _stage_i(mc: int, **kw) -> IFUNetConfig:
    return IFUNetConfig(model_channels=mc, encoder_channels=4 * mc, **kw)


def _stage_ii(mc: int, **kw) -> IFUNetConfig:
    mult = (1, 2, 4, 6, 8)
    return IFUNetConfig(in_channels=6, model_channels=mc, channel_mult=mult, num_res_blocks=(2, 2, 3, 5, 5),
                        attention=(False, False, False, True, True), only_cross_attention=True,
                        encoder_channels=mc * mult[-1], efficient_activation=True, skip_scale=0.7071,
                        super_resolution=True, image_size=256, **kw)


IF_UNET_PRESETS: dict[str, IFUNetConfig] = {
    "if-i-xl": _stage_i(704),
    "if-i-l": _stage_i(320),
    "if-i-m": _stage_i(192),
    "if-ii-l": _stage_ii(160),
    "if-ii-m": _stage_ii(96),
    # Imagen's 64 -> 256 super-resolution Efficient U-Net (Saharia et al. 2022, appendix F, fig. A.30-A.32):
    # 128-1024 wide with 2-4-8-8 ResBlocks (parameters moved to the lower resolutions), text cross-attention
    # at the lowest level only, residuals scaled by 1/sqrt(2), and the efficient block order (downsample
    # before a level's convolutions, upsample after them, one skip per level). No weights exist.
    "efficient-unet-sr256": IFUNetConfig(in_channels=6, model_channels=128, channel_mult=(1, 2, 4, 8),
                                         num_res_blocks=(2, 4, 8, 8), attention=(False, False, False, True),
                                         only_cross_attention=True, encoder_channels=1024,
                                         efficient_activation=True, skip_scale=0.7071, super_resolution=True,
                                         image_size=256, efficient=True),
    # Tests: two levels of 32/64 channels over the tiny T5 (32 wide).
    "tiny": IFUNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=(1, 1), attention=(False, True),
                         head_channels=8, encoder_dim=32, encoder_channels=64, att_pool_heads=4, norm_groups=8,
                         image_size=16),
    "tiny-sr": IFUNetConfig(in_channels=6, model_channels=32, channel_mult=(1, 2), num_res_blocks=(1, 2),
                            attention=(False, True), only_cross_attention=True, head_channels=8, encoder_dim=32,
                            encoder_channels=64, att_pool_heads=4, efficient_activation=True, skip_scale=0.7071,
                            super_resolution=True, norm_groups=8, image_size=32),
}


@dataclass(frozen=True)
class UpscalerUNetConfig:
    """The Stable Diffusion x4 upscaler's latent UNet (ldm `openaimodel.UNetModel`, official names).

    It denoises 4-channel latents concatenated with the (noise-augmented) low-resolution RGB image, and
    embeds the augmentation level like a class label (`label_emb`, 1000 rows). Heads are a fixed number
    per block (8), so the head size grows with the width; the first three levels cross-attend only
    (`disable_self_attentions`)."""

    in_channels: int = 7
    """4 latent channels + the 3 channels of the low-resolution image."""
    out_channels: int = 4
    """Predicted velocity (v-prediction) of the latent."""
    model_channels: int = 256
    """Width of the full-resolution level."""
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    """Level widths as multiples of model_channels."""
    num_res_blocks: int = 2
    """ResBlocks per down level (the up levels have one more)."""
    transformer_depth: tuple[int, ...] = (0, 1, 1, 1)
    """Transformer blocks per level (0: the level does not attend); the middle block has one."""
    only_cross_attention: tuple[bool, ...] = (True, True, True, False)
    """Per level: the first attention of each transformer block attends to the text instead of itself."""
    num_heads: int = 8
    """Heads per attention (fixed; the head size is the width / 8)."""
    context_dim: int = 1024
    """Width of the text tokens (OpenCLIP ViT-H's text encoder)."""
    num_classes: int = 1000
    """Rows of the noise-level embedding."""
    norm_groups: int = 32
    """GroupNorm groups (not stored in the weights)."""
    max_noise_level: int = 350
    """The largest augmentation level the release allows."""

    @property
    def level_channels(self) -> tuple[int, ...]:
        return tuple(self.model_channels * m for m in self.channel_mult)

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    # what the SD UNet's key map (stable_diffusion.convert_unet.block_map) reads
    @property
    def transformer_depth_middle(self) -> int:
        return 1

    def with_(self, **changes) -> "UpscalerUNetConfig":
        return replace(self, **changes)

    @classmethod
    def preset(cls, name: str) -> "UpscalerUNetConfig":
        if name not in UPSCALER_PRESETS:
            raise UserError(f"unknown x4 upscaler preset '{name}': {did_you_mean(name, UPSCALER_PRESETS)}")
        return UPSCALER_PRESETS[name]

    def check(self) -> None:
        levels = len(self.channel_mult)
        for name in ("transformer_depth", "only_cross_attention"):
            if len(getattr(self, name)) != levels:
                raise UserError(f"{name} {getattr(self, name)} needs one entry per level of {self.channel_mult}")
        widths = (self.model_channels, *self.level_channels)
        if any(w % self.norm_groups for w in widths) or any(w % self.num_heads for w in widths):
            raise UserError(f"norm_groups {self.norm_groups} and num_heads {self.num_heads} must divide every "
                            f"width {widths}")


UPSCALER_PRESETS: dict[str, UpscalerUNetConfig] = {
    # stabilityai/stable-diffusion-x4-upscaler (x4-upscaling.yaml)
    "sd-x4-upscaler": UpscalerUNetConfig(),
    "tiny": UpscalerUNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, transformer_depth=(0, 1),
                               only_cross_attention=(True, False), num_heads=4, context_dim=32, norm_groups=8),
}


__all__ = ["IFUNetConfig", "IF_UNET_PRESETS", "UPSCALER_PRESETS", "UpscalerUNetConfig"]

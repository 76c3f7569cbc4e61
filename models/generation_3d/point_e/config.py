"""Point-E architecture presets (the released model configs of openai/point-e, and tiny test sizes)."""
from __future__ import annotations

from dataclasses import dataclass

from utils.errors import UserError, did_you_mean


@dataclass(frozen=True)
class PointEConfig:
    """A point-cloud diffusion transformer (base, upsampler) of the release."""

    cond: str = "grid"
    """'vec' (one CLIP embedding of the text or image, a token before the time token), 'grid'
    (CLIP's image patch grid, after the time token), 'upsample' (the grid, then the low-resolution
    cloud's points as tokens) or 'none'."""
    n_ctx: int = 1024
    """Points the model denoises."""
    width: int = 512
    """Transformer width."""
    layers: int = 12
    """Transformer blocks."""
    heads: int = 8
    """Attention heads."""
    in_channels: int = 6
    """Channels per point: xyz and rgb."""
    out_channels: int = 12
    """Predicted channels: noise and the variance interpolation, 6 each."""
    clip_dim: int = 768
    """CLIP embedding width ('vec': 768 for ViT-L/14)."""
    grid_dim: int = 1024
    """CLIP grid feature width ('grid', 'upsample': 1024 for ViT-L/14)."""
    grid_tokens: int = 256
    """CLIP grid tokens (16 x 16 for ViT-L/14 at 224 px)."""
    cond_ctx: int = 1024
    """'upsample': points of the low-resolution cloud."""
    channel_scales: tuple[float, ...] = (2.0, 2.0, 2.0, 1 / 127.5, 1 / 127.5, 1 / 127.5)
    """'upsample': per-channel scale of the low-resolution cloud (xyz, rgb in 0..255) before its projection."""
    channel_biases: tuple[float, ...] = (0.0, 0.0, 0.0, -1.0, -1.0, -1.0)
    """'upsample': per-channel offset after the scale."""


@dataclass(frozen=True)
class SDFConfig:
    """The point cloud -> signed distance model (a transformer encoder and a cross-attention decoder)."""

    n_ctx: int = 4096
    """Points of the encoded cloud."""
    width: int = 256
    """Width of both halves."""
    encoder_layers: int = 8
    encoder_heads: int = 4
    decoder_layers: int = 4
    decoder_heads: int = 4


PRESETS: dict[str, PointEConfig | SDFConfig] = {
    "base40M-imagevec": PointEConfig(cond="vec"),
    "base40M-textvec": PointEConfig(cond="vec"),
    "base40M-uncond": PointEConfig(cond="none"),
    "base40M": PointEConfig(cond="grid"),
    "base300M": PointEConfig(cond="grid", width=1024, layers=24, heads=16),
    "base1B": PointEConfig(cond="grid", width=2048, layers=24, heads=32),
    "upsample": PointEConfig(cond="upsample", n_ctx=3072),
    "sdf": SDFConfig(),
    # tests: 4 heads of 8 channels, a 7 x 7 CLIP grid of 32 channels, 24-wide CLIP vectors
    "tiny-textvec": PointEConfig(cond="vec", n_ctx=64, width=32, layers=2, heads=4, clip_dim=24),
    "tiny": PointEConfig(cond="grid", n_ctx=64, width=32, layers=2, heads=4, grid_dim=32, grid_tokens=49),
    "tiny-upsample": PointEConfig(cond="upsample", n_ctx=192, width=32, layers=2, heads=4, grid_dim=32,
                                  grid_tokens=49, cond_ctx=64),
    "tiny-sdf": SDFConfig(n_ctx=64, width=32, encoder_layers=2, encoder_heads=4, decoder_layers=2, decoder_heads=4),
}


def get_config(preset: str) -> PointEConfig | SDFConfig:
    if preset not in PRESETS:
        raise UserError(f"point_e has no model config '{preset}': {did_you_mean(preset, PRESETS)}")
    return PRESETS[preset]

"""Sizes of the LTX-Video transformer (the Dream Machine stand-in's denoiser) and its named presets.

Field names follow diffusers' `LTXVideoTransformer3DModel` config (which the official release's
`Transformer3DModel` config shares: heads, head dim, layers, caption channels).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from utils.errors import UserError, did_you_mean


@dataclass(frozen=True)
class LTXTransformerConfig:
    """Sizes of one LTX-Video transformer."""

    in_channels: int = 128
    """Channels of one latent token (the VAE's 128 latent channels; LTX patchifies 1x1x1 in latent space)."""
    out_channels: int = 128
    """Channels of the predicted velocity per token."""
    num_attention_heads: int = 32
    """Attention heads of every self- and cross-attention."""
    attention_head_dim: int = 64
    """Channels per head; the token width is heads x head dim (2048 for the 2B model)."""
    num_layers: int = 28
    """Transformer blocks."""
    cross_attention_dim: int = 2048
    """Width of the projected text tokens that cross-attention reads (equal to the token width in every release)."""
    caption_channels: int = 4096
    """Width of the text encoder's tokens before `caption_projection` (T5-XXL: 4096)."""
    norm_eps: float = 1e-6
    """Epsilon of the blocks' RMS norms and of the final LayerNorm."""
    qk_norm_eps: float = 1e-5
    """Epsilon of the RMS norms over the queries and keys (across all heads)."""
    patch_size: int = 1
    """Spatial patch in latent space (1 in every release; the VAE already patchifies 4x4 pixels)."""
    patch_size_t: int = 1
    """Temporal patch in latent space (1 in every release)."""
    rope_theta: float = 10000.0
    """Largest rotary frequency ratio; frequencies are spaced geometrically from 1 to theta."""
    base_num_frames: int = 20
    """Frame coordinate that maps to the end of the rotary range (the release's positional_embedding_max_pos[0])."""
    base_height: int = 2048
    """Row coordinate (in pixels) that maps to the end of the rotary range."""
    base_width: int = 2048
    """Column coordinate (in pixels) that maps to the end of the rotary range."""
    timestep_scale: float = 1000.0
    """Factor from the sampler's sigma in [0, 1] to the timestep the embedding takes (the release's
    timestep_scale_multiplier)."""

    def __post_init__(self) -> None:
        if self.inner_dim % 2:
            raise UserError(f"LTX token width {self.inner_dim} must be even for rotary embeddings: fix the config")
        if self.patch_size != 1 or self.patch_size_t != 1:
            raise UserError("LTX-Video transformers patchify 1x1x1 in latent space; patch sizes other than 1 "
                            "are not released: set patch_size=patch_size_t=1")

    @property
    def inner_dim(self) -> int:
        """Token width."""
        return self.num_attention_heads * self.attention_head_dim

    def to_diffusers(self) -> dict[str, Any]:
        """The config of the equivalent diffusers `LTXVideoTransformer3DModel`."""
        return dict(in_channels=self.in_channels, out_channels=self.out_channels, patch_size=self.patch_size,
                    patch_size_t=self.patch_size_t, num_attention_heads=self.num_attention_heads,
                    attention_head_dim=self.attention_head_dim, cross_attention_dim=self.cross_attention_dim,
                    num_layers=self.num_layers, caption_channels=self.caption_channels, norm_eps=self.norm_eps)

    @classmethod
    def from_diffusers(cls, cfg: Mapping[str, Any]) -> "LTXTransformerConfig":
        """Read a diffusers `LTXVideoTransformer3DModel` config.json (or the release's transformer config)."""
        names = {f.name for f in fields(cls)}
        kept = {k: cfg[k] for k in names if k in cfg}
        if "positional_embedding_max_pos" in cfg:  # the official release's config
            kept["base_num_frames"], kept["base_height"], kept["base_width"] = cfg["positional_embedding_max_pos"]
        if "positional_embedding_theta" in cfg:
            kept["rope_theta"] = cfg["positional_embedding_theta"]
        if "timestep_scale_multiplier" in cfg:
            kept["timestep_scale"] = cfg["timestep_scale_multiplier"]
        return cls(**kept)


TRANSFORMER_PRESETS: dict[str, LTXTransformerConfig] = {
    # LTX-Video 0.9 / 0.9.1 / 0.9.5 2B: 28 blocks of width 2048.
    "ltxv-2b": LTXTransformerConfig(),
    # LTX-Video 0.9.7 / 0.9.8 13B: 48 blocks of width 4096.
    "ltxv-13b": LTXTransformerConfig(attention_head_dim=128, num_layers=48, cross_attention_dim=4096),
    "tiny": LTXTransformerConfig(in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=16,
                                 num_layers=2, cross_attention_dim=32, caption_channels=16),
}


def transformer_preset(name: str) -> LTXTransformerConfig:
    if name not in TRANSFORMER_PRESETS:
        raise UserError(f"unknown LTX transformer preset '{name}': {did_you_mean(name, TRANSFORMER_PRESETS)}")
    return TRANSFORMER_PRESETS[name]

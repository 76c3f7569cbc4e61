"""Sizes of the Wan video diffusion transformer (the Sora stand-in) and its named presets.

Field names follow the official Wan release's `WanModel(...)` arguments; `from_diffusers` reads the
config.json of diffusers' `WanTransformer3DModel`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from utils.errors import UserError, did_you_mean


@dataclass(frozen=True)
class WanTransformerConfig:
    """Sizes of one Wan transformer (official names)."""

    patch_size: tuple[int, int, int] = (1, 2, 2)
    """Spacetime patch (frames, rows, cols) of the latent cut into one token each."""
    in_dim: int = 16
    """Latent channels in (16 for t2v; 36 = 16 noisy + 4 mask + 16 image latents for Wan 2.1 i2v; 48 for Wan 2.2 5B)."""
    out_dim: int = 16
    """Predicted latent channels (the flow-matching velocity)."""
    dim: int = 1536
    """Token width."""
    ffn_dim: int = 8960
    """Hidden width of each block's feed-forward."""
    freq_dim: int = 256
    """Sinusoidal features of the timestep before `time_embedding`."""
    text_dim: int = 4096
    """Width of the text encoder's tokens (UMT5-XXL: 4096)."""
    num_heads: int = 12
    """Attention heads; head dim = dim / num_heads (128 in every release)."""
    num_layers: int = 30
    """Transformer blocks."""
    cross_attn_norm: bool = True
    """Whether a LayerNorm with gains (`norm3`) precedes each cross-attention (True in every release)."""
    eps: float = 1e-6
    """Epsilon of the LayerNorms and of the q/k RMS norms."""
    image_dim: int | None = None
    """Width of the CLIP image tokens for image-to-video (ViT-H/14 penultimate: 1280); None = text only."""
    image_pos_len: int | None = None
    """Learned position table over the image tokens (first-last-frame model: 514); None = no table."""
    rope_theta: float = 10000.0
    """Base of the 3-D rotary frequencies."""

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise UserError(f"Wan dim {self.dim} is not a multiple of num_heads {self.num_heads}: fix the config")
        if (self.dim // self.num_heads) % 2:
            raise UserError(f"Wan head dim {self.dim // self.num_heads} must be even for rotary embeddings: fix the config")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def rope_axes(self) -> tuple[int, int, int]:
        """Head channels rotated by (frame, row, col): rows and cols get 2*(d//6) each, frames the rest."""
        hw = 2 * (self.head_dim // 6)
        return (self.head_dim - 2 * hw, hw, hw)

    @property
    def i2v(self) -> bool:
        return self.image_dim is not None

    def to_diffusers(self) -> dict[str, Any]:
        """The config of the equivalent diffusers `WanTransformer3DModel`."""
        return dict(patch_size=tuple(self.patch_size), num_attention_heads=self.num_heads,
                    attention_head_dim=self.head_dim, in_channels=self.in_dim, out_channels=self.out_dim,
                    text_dim=self.text_dim, freq_dim=self.freq_dim, ffn_dim=self.ffn_dim,
                    num_layers=self.num_layers, cross_attn_norm=self.cross_attn_norm,
                    qk_norm="rms_norm_across_heads", eps=self.eps, image_dim=self.image_dim,
                    added_kv_proj_dim=self.dim if self.image_dim is not None else None,
                    pos_embed_seq_len=self.image_pos_len)

    @classmethod
    def from_diffusers(cls, cfg: Mapping[str, Any]) -> "WanTransformerConfig":
        """Read a diffusers `WanTransformer3DModel` config.json (defaults are diffusers' own)."""
        if cfg.get("qk_norm", "rms_norm_across_heads") not in ("rms_norm_across_heads", None):
            raise UserError(f"Wan qk_norm '{cfg['qk_norm']}' is not supported: only 'rms_norm_across_heads' was released")
        heads = int(cfg.get("num_attention_heads", 40))
        in_dim = int(cfg.get("in_channels", 16))
        return cls(patch_size=tuple(int(p) for p in cfg.get("patch_size", (1, 2, 2))), in_dim=in_dim,
                   out_dim=int(cfg.get("out_channels") or in_dim), dim=heads * int(cfg.get("attention_head_dim", 128)),
                   ffn_dim=int(cfg.get("ffn_dim", 13824)), freq_dim=int(cfg.get("freq_dim", 256)),
                   text_dim=int(cfg.get("text_dim", 4096)), num_heads=heads, num_layers=int(cfg.get("num_layers", 40)),
                   cross_attn_norm=bool(cfg.get("cross_attn_norm", True)), eps=float(cfg.get("eps", 1e-6)),
                   image_dim=cfg.get("image_dim"), image_pos_len=cfg.get("pos_embed_seq_len"))


TRANSFORMER_PRESETS: dict[str, WanTransformerConfig] = {
    "wan2.1-t2v-1.3b": WanTransformerConfig(),
    "wan2.1-t2v-14b": WanTransformerConfig(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40),
    "wan2.1-i2v-14b-480p": WanTransformerConfig(in_dim=36, dim=5120, ffn_dim=13824, num_heads=40, num_layers=40,
                                                image_dim=1280),
    "wan2.2-ti2v-5b": WanTransformerConfig(in_dim=48, out_dim=48, dim=3072, ffn_dim=14336, num_heads=24, num_layers=30),
    # Tests: fits the tiny Wan VAE (4 latent channels) and the tiny UMT5 (32 wide); tiny-i2v adds the tiny CLIP's
    # 32-wide tokens and 4 + 4 conditioning channels (mask, image latents).
    "tiny": WanTransformerConfig(in_dim=4, out_dim=4, dim=48, ffn_dim=64, freq_dim=32, text_dim=32, num_heads=2,
                                 num_layers=2),
    "tiny-i2v": WanTransformerConfig(in_dim=12, out_dim=4, dim=48, ffn_dim=64, freq_dim=32, text_dim=32, num_heads=2,
                                     num_layers=2, image_dim=32),
    # Tests: the Wan 2.2 TI2V scheme at tiny size, over the tiny Wan 2.2 VAE (`tiny-2.2`: 6 latent channels).
    "tiny-ti2v": WanTransformerConfig(in_dim=6, out_dim=6, dim=48, ffn_dim=64, freq_dim=32, text_dim=32, num_heads=2,
                                      num_layers=2),
}


def transformer_config(preset: str, **overrides: Any) -> WanTransformerConfig:
    """The preset's config with `overrides` applied; an unknown preset is a UserError."""
    if preset not in TRANSFORMER_PRESETS:
        raise UserError(f"unknown Wan transformer preset '{preset}': {did_you_mean(preset, TRANSFORMER_PRESETS)}")
    return replace(TRANSFORMER_PRESETS[preset], **overrides)


__all__ = ["TRANSFORMER_PRESETS", "WanTransformerConfig", "transformer_config"]

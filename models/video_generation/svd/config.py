"""Sizes of the SVD UNet (Stability's `VideoUNet`) and its named presets.

SVD, SVD-XT and SVD-XT 1.1 share one architecture (`svd.yaml` / `svd_xt.yaml` of generative-models);
they differ in weights, trained frame count and sampling defaults (spec.py), not in shapes.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from utils.errors import UserError, did_you_mean

RESNET_EPS_LAYOUTS = ("sgm", "diffusers")


@dataclass(frozen=True)
class SVDUNetConfig:
    """Sizes of an SVD UNet (names follow the release's yaml where it has one)."""

    in_channels: int = 8
    """Noisy latents (4) concatenated with the conditioning frame's latents (4)."""
    out_channels: int = 4
    """Predicted channels (a v-prediction of the 4 latent channels)."""
    model_channels: int = 320
    """Width of the full-resolution level; the timestep embedding is 4x as wide."""
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    """Level widths as multiples of model_channels; each level but the last halves the resolution."""
    num_res_blocks: int = 2
    """Res blocks per input level (the output side has one more)."""
    transformer_depth: tuple[int, ...] = (1, 1, 1, 0)
    """Spatial+temporal transformer blocks per attending level; 0 = that level has no attention
    (the release attends at 1, 1/2 and 1/4 resolution: `attention_resolutions: [4, 2, 1]`)."""
    transformer_depth_middle: int = 1
    """Transformer blocks of the middle block."""
    head_dim: int = 64
    """Channels per attention head (`num_head_channels`); not stored in the weights (64 in the release)."""
    context_dim: int = 1024
    """Width of the image embedding the UNet attends to (CLIP ViT-H/14's projection)."""
    adm_in_channels: int = 768
    """Width of the vector conditioning: Fourier features of fps, motion bucket and noise augmentation."""
    addition_time_embed_dim: int = 256
    """Fourier features per conditioning number (adm_in_channels = 3 x this; not stored in the weights)."""
    norm_groups: int = 32
    """GroupNorm groups of every norm (not stored in the weights: 32 in the release)."""
    video_kernel_t: int = 3
    """Temporal kernel of the res blocks' 3-D convolutions (`video_kernel_size: [3, 1, 1]`)."""
    merge_factor: float = 0.5
    """Initial spatial/temporal mix (sigmoid(0.5)); training changes it, so it matters only for new layers."""
    resnet_eps: str = "sgm"
    """GroupNorm eps of the res blocks: 'sgm' is the release's code (1e-5 everywhere); 'diffusers' is
    diffusers' port (1e-6 in the down levels that attend and in every up level, 1e-5 elsewhere). Only
    the parity tests against diffusers use 'diffusers'."""

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels

    @property
    def level_channels(self) -> tuple[int, ...]:
        return tuple(self.model_channels * m for m in self.channel_mult)

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def latent_channels(self) -> int:
        """Channels of the latents the UNet denoises (the other half of the input is the conditioning)."""
        return self.in_channels - self.out_channels

    @classmethod
    def preset(cls, name: str) -> "SVDUNetConfig":
        if name not in UNET_PRESETS:
            raise UserError(f"unknown SVD UNet preset '{name}': {did_you_mean(name, UNET_PRESETS)}")
        return UNET_PRESETS[name]

    def with_(self, **changes) -> "SVDUNetConfig":
        return replace(self, **changes)

    def resnet_eps_for(self, part: str, attends: bool) -> float:
        """The res blocks' GroupNorm eps in `part` ('down', 'mid' or 'up') of a level that attends or not."""
        if self.resnet_eps == "sgm" or part == "mid" or (part == "down" and not attends):
            return 1e-5
        return 1e-6

    def check(self) -> None:
        """A one-line UserError for sizes no UNet can be built with (instead of a torch error)."""
        levels = len(self.channel_mult)
        if len(self.transformer_depth) != levels:
            raise UserError(f"transformer_depth {self.transformer_depth} needs one entry per level of channel_mult "
                            f"{self.channel_mult}")
        if self.in_channels <= self.out_channels:
            raise UserError(f"in_channels {self.in_channels} must hold the latents ({self.out_channels}) and the "
                            "conditioning frame's latents")
        widths = (self.model_channels, *self.level_channels)
        if self.norm_groups <= 0 or any(w % self.norm_groups for w in widths):
            raise UserError(f"norm_groups {self.norm_groups} does not divide every width of this UNet {widths}")
        attending = [self.level_channels[i] for i in range(levels) if self.transformer_depth[i]]
        attending.append(self.level_channels[-1])
        if self.head_dim <= 0 or any(w % self.head_dim for w in attending):
            raise UserError(f"head_dim {self.head_dim} does not divide the widths of the attending levels {attending}")
        if self.adm_in_channels != 3 * self.addition_time_embed_dim:
            raise UserError(f"adm_in_channels {self.adm_in_channels} must be 3 x addition_time_embed_dim "
                            f"({self.addition_time_embed_dim}): fps, motion bucket and noise augmentation")
        if self.resnet_eps not in RESNET_EPS_LAYOUTS:
            raise UserError(f"resnet_eps must be one of {RESNET_EPS_LAYOUTS}, got '{self.resnet_eps}'")


UNET_PRESETS: dict[str, SVDUNetConfig] = {
    # generative-models configs svd.yaml / svd_xt.yaml: 1.52 B parameters.
    "svd": SVDUNetConfig(),
    # Tests and offline runs: two attending levels of 32 and 64 channels, heads of 16, a 32-wide image embedding.
    "tiny": SVDUNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, transformer_depth=(1, 1),
                          head_dim=16, context_dim=32, adm_in_channels=24, addition_time_embed_dim=8),
}


__all__ = ["RESNET_EPS_LAYOUTS", "SVDUNetConfig", "UNET_PRESETS"]

"""The StyleGAN3 / StyleGAN2 generator and discriminator, assembled from utils/nn/stylegan.

`StyleGANGenerator` = `mapping` (z, c -> w, utils/nn/stylegan/mapping.py) + `synthesis` (ws -> image:
StyleGAN3Synthesis or StyleGAN2Synthesis), with NVlabs' attribute names, so the state dict of a
release's G / G_ema loads without renaming. `StyleGANDiscriminator` is NVlabs' StyleGAN2
discriminator (both releases train with it).

Labels: integer class indices (B,) are one-hot encoded; float (B, num_classes) labels are taken as
they are (NVlabs' c).
"""
from __future__ import annotations

import torch
from torch import nn

from models.gan.stylegan3.config import StyleGANConfig
from utils.nn.stylegan.discriminator import StyleGAN2Discriminator
from utils.nn.stylegan.mapping import MappingNetwork
from utils.nn.stylegan.stylegan2 import StyleGAN2Synthesis
from utils.nn.stylegan.stylegan3 import StyleGAN3Synthesis

Tensor = torch.Tensor

__all__ = ["StyleGANGenerator", "StyleGANDiscriminator", "build_synthesis", "one_hot_labels"]


def one_hot_labels(labels: Tensor | None, num_classes: int, batch: int, device: torch.device) -> Tensor:
    """NVlabs' c: (B, num_classes) floats from int labels (one-hot), float labels, or nothing (B, 0)."""
    if num_classes == 0:
        return torch.zeros(batch, 0, device=device)
    if labels is None:
        raise ValueError(f"this generator is class-conditional ({num_classes} classes): pass labels")
    if labels.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
        return torch.nn.functional.one_hot(labels.long().to(device), num_classes).to(torch.float32)
    return labels.to(device=device, dtype=torch.float32)


def build_synthesis(c: StyleGANConfig) -> nn.Module:
    if c.is_stylegan3:
        return StyleGAN3Synthesis(
            w_dim=c.w_dim, img_resolution=c.image_size, img_channels=c.channels, channel_base=c.channel_base,
            channel_max=c.channel_max, num_layers=c.num_layers, num_critical=c.num_critical,
            first_cutoff=c.first_cutoff, first_stopband=c.first_stopband, last_stopband_rel=c.last_stopband_rel,
            margin_size=c.margin_size, output_scale=c.output_scale, num_fp16_res=c.num_fp16_res,
            conv_kernel=c.conv_kernel, filter_size=c.filter_size, lrelu_upsampling=c.lrelu_upsampling,
            use_radial_filters=c.use_radial_filters, conv_clamp=c.conv_clamp,
            magnitude_ema_beta=c.magnitude_ema_beta)
    return StyleGAN2Synthesis(
        w_dim=c.w_dim, img_resolution=c.image_size, img_channels=c.channels, channel_base=c.channel_base,
        channel_max=c.channel_max, num_fp16_res=c.num_fp16_res, architecture=c.synthesis_architecture,
        resample_filter=tuple(c.resample_filter), conv_clamp=c.conv_clamp, use_noise=c.use_noise)


class StyleGANGenerator(nn.Module):
    """z (B, z_dim) [+ labels] -> images (B, C, R, R) in about [-1, 1]."""

    def __init__(self, config: StyleGANConfig):
        super().__init__()
        self.config = config
        self.synthesis = build_synthesis(config)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=config.z_dim, c_dim=config.num_classes, w_dim=config.w_dim,
                                      num_ws=self.num_ws, num_layers=config.mapping_layers,
                                      lr_multiplier=config.mapping_lr, w_avg_beta=config.w_avg_beta)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.config.z_dim,)

    @property
    def z_dim(self) -> int:
        return self.config.z_dim

    def map(self, z: Tensor, labels: Tensor | None = None, truncation_psi: float = 1.0,
            truncation_cutoff: int | None = None, update_emas: bool = False) -> Tensor:
        """z -> ws (B, num_ws, w_dim), truncated towards w_avg by psi on the first `truncation_cutoff` styles."""
        c = one_hot_labels(labels, self.config.num_classes, z.shape[0], z.device)
        return self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                            update_emas=update_emas)

    def synthesize(self, ws: Tensor, noise_mode: str = "const", transform: Tensor | None = None,
                   noise_generator: torch.Generator | None = None, update_emas: bool = False, **kwargs) -> Tensor:
        """ws -> images. `transform`: the inverse 3x3 transform of the output (StyleGAN3: any similarity;
        StyleGAN2: translations of its constant input). `noise_mode` (StyleGAN2): const, random or none."""
        return self.synthesis(ws, noise_mode=noise_mode, transform=transform, noise_generator=noise_generator,
                              update_emas=update_emas, **kwargs)

    def forward(self, z: Tensor, labels: Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "const", transform: Tensor | None = None,
                update_emas: bool = False, noise_generator: torch.Generator | None = None,
                mix_z: Tensor | None = None, mix_cutoff: int | None = None,
                return_ws: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Images from z. Style mixing (training): the styles from `mix_cutoff` on come from `mix_z`.
        `return_ws` also returns the ws the images came from (path length regularisation)."""
        ws = self.map(z, labels, truncation_psi, truncation_cutoff, update_emas=update_emas)
        if mix_z is not None and mix_cutoff is not None and mix_cutoff < self.num_ws:
            ws = torch.cat([ws[:, :mix_cutoff], self.map(mix_z, labels, truncation_psi, truncation_cutoff)[:, mix_cutoff:]],
                           dim=1)
        img = self.synthesize(ws, noise_mode=noise_mode, transform=transform, noise_generator=noise_generator,
                              update_emas=update_emas)
        return (img, ws) if return_ws else img


class StyleGANDiscriminator(StyleGAN2Discriminator):
    """images (B, C, R, R) [+ labels] -> logits (B, 1): NVlabs' ResNet discriminator."""

    def __init__(self, config: StyleGANConfig):
        super().__init__(c_dim=config.num_classes, img_resolution=config.image_size, img_channels=config.channels,
                         architecture=config.d_architecture, channel_base=config.d_channel_base,
                         channel_max=config.d_channel_max, num_fp16_res=config.num_fp16_res,
                         conv_clamp=config.conv_clamp,
                         block_kwargs=dict(resample_filter=tuple(config.resample_filter)),
                         epilogue_kwargs=dict(mbstd_group_size=config.mbstd_group_size,
                                              mbstd_num_channels=config.mbstd_num_channels))
        self.config = config

    def forward(self, img: Tensor, labels: Tensor | None = None, force_fp32: bool = False) -> Tensor:
        c = one_hot_labels(labels, self.config.num_classes, img.shape[0], img.device)
        return super().forward(img, c if self.config.num_classes else None, force_fp32=force_fp32)

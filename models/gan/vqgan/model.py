"""VQGAN: encoder -> 1x1 conv -> vector quantiser -> 1x1 conv -> decoder (Esser et al. 2021).

The encoder and decoder are the conv autoencoder trunk shared with the KL VAE
(`utils.nn.conv_autoencoder`); the VQ head (quant_conv, quantize, post_quant_conv) is this model's.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from models.gan.vqgan.config import VQGANConfig
from models.gan.vqgan.quantizer import VectorQuantizer
from utils.nn.conv_autoencoder import Decoder, Encoder


class VQEncoding(NamedTuple):
    quantized: torch.Tensor
    """(B, embed_dim, H/f, W/f), with the straight-through gradient."""
    loss: torch.Tensor
    """The codebook + commitment loss (a scalar)."""
    indices: torch.Tensor
    """(B, H/f, W/f) code indices."""


class VQGAN(nn.Module):
    """Images in [-1, 1] <-> grids of code indices."""

    def __init__(self, config: VQGANConfig):
        super().__init__()
        self.config = c = config
        self.encoder = Encoder(c.trunk)
        self.decoder = Decoder(c.trunk)
        self.quant_conv = nn.Conv2d(c.z_channels, c.embed_dim, 1)
        self.quantize = VectorQuantizer(c.n_embed, c.embed_dim, c.beta, c.legacy)
        self.post_quant_conv = nn.Conv2d(c.embed_dim, c.z_channels, 1)

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """The continuous latents before quantisation (diffusers' `VQModel.encode`)."""
        return self.quant_conv(self.encoder(x))

    def encode(self, x: torch.Tensor) -> VQEncoding:
        return VQEncoding(*self.quantize(self.encode_latents(x)))

    def encode_to_indices(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x).indices

    def decode(self, quantized: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(quantized))

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, h, w) code indices -> images (B, out_channels, h*f, w*f)."""
        if indices.min() < 0 or indices.max() >= self.config.n_embed:
            raise ValueError(f"code indices must lie in 0..{self.config.n_embed - 1}")
        return self.decode(self.quantize.lookup(indices))

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's output kernel, where the adaptive GAN weight compares gradients."""
        return self.decoder.conv_out.weight

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x -> (reconstruction, codebook loss, indices)."""
        enc = self.encode(x)
        return self.decode(enc.quantized), enc.loss, enc.indices

"""Nearest-neighbour vector quantiser with a straight-through gradient (van den Oord et al. 2017)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class VectorQuantizer(nn.Module):
    """Replaces each vector of z (B, C, H, W) by its nearest codebook entry.

    Loss, with sg the stop-gradient:
    - corrected (legacy=False), the VQ-VAE paper: ||sg[z] - e||^2 + beta ||z - sg[e]||^2,
      beta weighting the commitment of the encoder;
    - legacy (taming's original code, the default of its released models): ||z - sg[e]||^2 +
      beta ||sg[z] - e||^2, beta on the codebook term; equivalent to a commitment weight of 1.
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float = 0.25, legacy: bool = True):
        super().__init__()
        self.n_embed, self.embed_dim, self.beta, self.legacy = n_embed, embed_dim, beta, legacy
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the closest code of each row of `flat` (N, C), by squared Euclidean distance."""
        e = self.embedding.weight
        d = flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1)[None] - 2.0 * flat @ e.t()
        return d.argmin(dim=1)

    def loss(self, z: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
        commitment = F.mse_loss(z, z_q.detach())  # trains the encoder
        codebook = F.mse_loss(z_q, z.detach())  # trains the codes
        if self.legacy:
            return commitment + self.beta * codebook
        return self.beta * commitment + codebook

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (B, C, H, W) -> (quantised z with straight-through gradient, loss, indices (B, H, W))."""
        b, c, h, w = z.shape
        zc = z.permute(0, 2, 3, 1)
        idx = self.nearest(zc.reshape(-1, c))
        z_q = self.embedding(idx).view(b, h, w, c)
        loss = self.loss(zc, z_q)
        z_q = zc + (z_q - zc).detach()
        return z_q.permute(0, 3, 1, 2).contiguous(), loss, idx.view(b, h, w)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, H, W) -> quantised vectors (B, C, H, W)."""
        return self.embedding(indices.long()).permute(0, 3, 1, 2).contiguous()

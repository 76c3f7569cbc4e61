"""Aetherist's backbone: a style-modulated Vision Transformer that writes the triplanes.

A learned grid of (R / p)^2 tokens (width `vit_dim`, with a learned position embedding) runs through
`vit_layers` pre-norm transformer blocks; each block's two LayerNorms are modulated by its own w
(scale and shift from an equalized affine layer, initialised near the identity: small random weights,
zero bias),
so the latent steers every layer the way the styles steer a StyleGAN synthesis network. A final
modulated norm and a linear head turn each token into its p x p patch of the three planes
(3 * C channels), unpatchified to (B, 3 * C, R, R) like the StyleGAN2 backbone's output. It takes
num_ws = vit_layers + 1 styles (the last also feeds the super-resolution, as in EG3D).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.nn.attention import attention
from utils.nn.stylegan import FullyConnectedLayer

__all__ = ["ModulatedNorm", "ViTBlock", "ViTBackbone"]


class ModulatedNorm(nn.Module):
    """LayerNorm without affine, then x (1 + scale(w)) + shift(w)."""

    def __init__(self, dim: int, w_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.affine = FullyConnectedLayer(w_dim, 2 * dim, bias_init=0.0, weight_init=0.25)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        scale, shift = self.affine(w).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]


class ViTBlock(nn.Module):
    """x + attn(norm1(x, w)); x + mlp(norm2(x, w))."""

    def __init__(self, dim: int, heads: int, w_dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.heads = heads
        self.norm1 = ModulatedNorm(dim, w_dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = ModulatedNorm(dim, w_dim)
        hidden = int(dim * mlp_ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(self.norm1(x, w)).reshape(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.proj(attention(q, k, v).transpose(1, 2).reshape(B, N, D))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x, w))))


class ViTBackbone(nn.Module):
    """ws (B, vit_layers + 1, w_dim) -> triplane features (B, 3 * C, R, R)."""

    def __init__(self, w_dim: int, triplane_resolution: int, triplane_channels: int, vit_dim: int = 256,
                 vit_layers: int = 8, vit_heads: int = 8, patch_size: int = 4, mlp_ratio: float = 4.0):
        super().__init__()
        self.w_dim, self.resolution, self.patch = w_dim, triplane_resolution, patch_size
        self.out_channels = 3 * triplane_channels
        self.grid = triplane_resolution // patch_size
        self.num_ws = vit_layers + 1
        self.tokens = nn.Parameter(torch.randn(self.grid * self.grid, vit_dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(self.grid * self.grid, vit_dim) * 0.02)
        self.blocks = nn.ModuleList(ViTBlock(vit_dim, vit_heads, w_dim, mlp_ratio) for _ in range(vit_layers))
        self.norm_out = ModulatedNorm(vit_dim, w_dim)
        self.head = nn.Linear(vit_dim, patch_size * patch_size * self.out_channels)

    def forward(self, ws: Tensor, **_: object) -> Tensor:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"the ViT backbone takes ws of shape (batch, {self.num_ws}, {self.w_dim}), got "
                             f"{tuple(ws.shape)}")
        B = ws.shape[0]
        x = (self.tokens + self.pos_embed)[None].expand(B, -1, -1)
        for i, block in enumerate(self.blocks):
            x = block(x, ws[:, i])
        x = self.head(self.norm_out(x, ws[:, -1]))
        g, p, c = self.grid, self.patch, self.out_channels
        return x.reshape(B, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(B, c, g * p, g * p)

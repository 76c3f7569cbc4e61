"""The BigGAN-deep discriminator (projection, spectral norm) and BigGAN's orthogonal regulariser.

DeepMind released no discriminator weights; this is the architecture of the paper (appendix B):
the generator mirrored, with bottleneck blocks that average-pool to downsample and widen their
skip path by concatenating a learned 1x1 projection to the unchanged input channels.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from models.gan.biggan.config import BigGANDiscriminatorConfig
from models.gan.biggan.layers import SelfAttention, SNConv2d, SNEmbedding, SNLinear
# BigGAN trains with the hinge loss of the shared toolkit; `models.gan.biggan` exports it from here
from utils.gan.losses import hinge_d_loss, hinge_g_loss  # noqa: F401


class DiscriminatorBlock(nn.Module):
    """ReLU -> 1x1 -> ReLU -> 3x3 -> ReLU -> 3x3 -> ReLU -> (avg pool) -> 1x1, plus the skip path."""

    def __init__(self, in_ch: int, out_ch: int, downsample: bool, eps: float):
        super().__init__()
        mid = in_ch // 4
        self.downsample = downsample
        self.conv0 = SNConv2d(in_ch, mid, 1, eps=eps)
        self.conv1 = SNConv2d(mid, mid, 3, padding=1, eps=eps)
        self.conv2 = SNConv2d(mid, mid, 3, padding=1, eps=eps)
        self.conv3 = SNConv2d(mid, out_ch, 1, eps=eps)
        # The skip path passes the input unchanged and appends (out - in) learned channels.
        self.skip = SNConv2d(in_ch, out_ch - in_ch, 1, eps=eps) if out_ch > in_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.relu(x))
        h = self.conv1(F.relu(h))
        h = self.conv2(F.relu(h))
        h = F.relu(h)
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        h = self.conv3(h)
        s = F.avg_pool2d(x, 2) if self.downsample else x
        if self.skip is not None:
            s = torch.cat([s, self.skip(s)], dim=1)
        return h + s


class BigGANDiscriminator(nn.Module):
    """Images (B, 3, H, W) in [-1, 1] and labels (B,) -> logits (B,).

    logit = w . phi(x) + <embed(y), phi(x)>, where phi is the sum-pooled last feature map:
    the projection discriminator of Miyato & Koyama (2018).
    """

    def __init__(self, config: BigGANDiscriminatorConfig):
        super().__init__()
        self.config = c = config
        if not c.layers:
            raise ValueError("a discriminator config needs its layers: use BigGANDiscriminatorConfig.mirror(g)")
        self.stem = SNConv2d(3, c.layers[0][1] * c.ch, 3, padding=1, eps=c.eps)
        self.blocks = nn.ModuleList(DiscriminatorBlock(i * c.ch, o * c.ch, down, c.eps) for down, i, o in c.layers)
        self.attention = SelfAttention(c.layers[c.attention_index][1] * c.ch, eps=c.eps)
        out_w = c.layers[-1][2] * c.ch
        self.linear = SNLinear(out_w, 1, eps=c.eps)
        self.class_embed = SNEmbedding(c.num_classes, out_w, eps=c.eps) if c.num_classes > 0 else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for i, block in enumerate(self.blocks):
            if i == self.config.attention_index:
                h = self.attention(h)
            h = block(h)
        return F.relu(h).sum(dim=(2, 3))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.features(x)
        out = self.linear(phi)[:, 0]
        if self.class_embed is not None:
            if y is None:
                raise ValueError("this discriminator is class-conditional: pass the labels")
            out = out + (self.class_embed(y) * phi).sum(dim=1)
        return out


def orthogonal_regularization(params: Iterable[torch.Tensor], strength: float = 1e-4) -> torch.Tensor:
    """BigGAN's orthogonal regulariser: strength * sum_W ||W W^T * (1 - I)||_F^2.

    Each weight is viewed as a (out, in * k * k) matrix; only the off-diagonal entries of its Gram
    matrix are penalised, so filters are pushed towards orthogonality without fixing their norms.
    Pass the generator's weight matrices (ndim >= 2), e.g. `ortho_params(generator)`.

    For a tall W (more rows than columns, e.g. G's stem: 32768 x 256 at 128 px) the row Gram matrix
    would not fit in memory; ||W W^T||_F = ||W^T W||_F, so the off-diagonal part is the small Gram
    matrix's squared norm minus the squared row norms squared (the diagonal of W W^T).
    """
    total = None
    for w in params:
        m = w.flatten(1)
        if m.shape[0] > m.shape[1]:
            term = (m.t() @ m).pow(2).sum() - m.pow(2).sum(1).pow(2).sum()
        else:
            gram = m @ m.t()
            term = (gram - torch.diag_embed(torch.diagonal(gram))).pow(2).sum()
        total = term if total is None else total + term
    return torch.zeros(()) if total is None else strength * total


def ortho_params(module: nn.Module, skip: tuple[str, ...] = ("class_embed",)) -> list[torch.Tensor]:
    """The weights the paper regularises: every parameter with 2+ dims, except the class embeddings."""
    return [p for n, p in module.named_parameters() if p.ndim >= 2 and not n.startswith(skip)]

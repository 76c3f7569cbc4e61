"""The BigGAN-deep generator (Brock et al. 2018, appendix B), as released by DeepMind on TF Hub."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.gan.biggan.config import BigGANConfig
from models.gan.biggan.layers import BatchNorm, ConditionalBatchNorm, SelfAttention, SNConv2d, SNLinear


class GeneratorBlock(nn.Module):
    """Bottleneck residual block: four (cond. BN, ReLU, conv) stages 1x1 -> 3x3 -> 3x3 -> 1x1.

    The bottleneck has a quarter of the input channels. Where the block narrows, the skip path
    keeps the first channels and drops the rest (BigGAN-deep's identity-preserving shortcut);
    where it upsamples, both paths use nearest-neighbour 2x upsampling.
    """

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, upsample: bool, n_stats: int, eps: float):
        super().__init__()
        mid = in_ch // 4
        self.upsample = upsample
        self.out_ch = out_ch
        self.norm0 = ConditionalBatchNorm(in_ch, cond_dim, n_stats, eps)
        self.conv0 = SNConv2d(in_ch, mid, 1, eps=eps)
        self.norm1 = ConditionalBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv1 = SNConv2d(mid, mid, 3, padding=1, eps=eps)
        self.norm2 = ConditionalBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv2 = SNConv2d(mid, mid, 3, padding=1, eps=eps)
        self.norm3 = ConditionalBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv3 = SNConv2d(mid, out_ch, 1, eps=eps)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        h = self.conv0(F.relu(self.norm0(x, cond, truncation)))
        h = F.relu(self.norm1(h, cond, truncation))
        if self.upsample:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.conv1(h)
        h = self.conv2(F.relu(self.norm2(h, cond, truncation)))
        h = self.conv3(F.relu(self.norm3(h, cond, truncation)))
        skip = x[:, : self.out_ch] if x.shape[1] > self.out_ch else x
        if self.upsample:
            skip = F.interpolate(skip, scale_factor=2, mode="nearest")
        return h + skip


class BigGANGenerator(nn.Module):
    """z (B, z_dim) and a class (labels (B,) or class vectors (B, num_classes)) -> images in [-1, 1].

    The class goes through the shared embedding (a linear map without bias, so one-hot vectors
    and label lookups agree), is concatenated with z, and this vector conditions every batch norm.
    """

    def __init__(self, config: BigGANConfig):
        super().__init__()
        self.config = config
        c = config
        self.class_embed = nn.Linear(c.num_classes, c.z_dim, bias=False)
        w0 = c.layers[0][1] * c.ch
        self.stem = SNLinear(c.cond_dim, c.bottom_width ** 2 * w0, eps=c.eps)
        self.blocks = nn.ModuleList(
            GeneratorBlock(i * c.ch, o * c.ch, c.cond_dim, up, c.n_stats, c.eps) for up, i, o in c.layers)
        self.attention = SelfAttention(c.layers[c.attention_index][1] * c.ch, eps=c.eps)
        out_w = c.layers[-1][2] * c.ch
        self.out_norm = BatchNorm(out_w, c.n_stats, c.eps)
        # The release's last conv has `out_w` outputs of which only the first 3 are used as RGB.
        self.to_rgb = SNConv2d(out_w, out_w, 3, padding=1, eps=c.eps)

    @property
    def latent_shape(self) -> tuple[int]:
        return (self.config.z_dim,)

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        if y.dtype in (torch.int64, torch.int32):
            return self.class_embed.weight.t()[y.long()]
        return self.class_embed(y)

    def forward(self, z: torch.Tensor, y: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        if not 0.0 < truncation <= 1.0:
            raise ValueError(f"truncation must be in (0, 1], got {truncation}")
        c = self.config
        cond = torch.cat([z, self.embed(y).to(z.dtype)], dim=1)
        w0 = c.layers[0][1] * c.ch
        # The stem's outputs are laid out height, width, channels (the TF order of the release).
        h = self.stem(cond).view(-1, c.bottom_width, c.bottom_width, w0).permute(0, 3, 1, 2).contiguous()
        for i, block in enumerate(self.blocks):
            if i == c.attention_index:
                h = self.attention(h)
            h = block(h, cond, truncation)
        h = F.relu(self.out_norm(h, truncation))
        # Normalise the full kernel (its spectral norm depends on every output), then compute
        # only the 3 channels that are kept: the same result for a fraction of the work.
        weight = self.to_rgb.sn_weight()[:3]
        bias = self.to_rgb.bias[:3]
        return torch.tanh(F.conv2d(h, weight, bias, padding=1))

"""The fields: networks from a point (and a view direction) to density and colour.

- `NeRFField`: the 8-layer, 256-wide MLP with a skip connection of NeRF, density from the
  trunk, colour from one more layer that sees the encoded view direction. The same module with
  the integrated positional encoding is mip-NeRF's single multi-scale MLP.
- `HashField`: Instant-NGP's field (hash grid -> 1-hidden-layer density MLP -> geometry features;
  SH(direction) + features -> 2-hidden-layer colour MLP), optionally with nerfacto's scene
  contraction and per-image appearance embedding.
- `HashDensityField`: nerfacto's small proposal density networks.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from utils.nn.encodings import (HashGridEncoding, IntegratedPositionalEncoding, PositionalEncoding,
                                SHDirectionEncoding)
from utils.rendering.contraction import normalized_contract

__all__ = ["MLP", "trunc_exp", "NeRFField", "HashField", "HashDensityField"]


class _TruncExp(torch.autograd.Function):
    """exp(x) with its gradient taken at min(x, 15), so large pre-activations cannot blow up."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15))


def trunc_exp(x: Tensor) -> Tensor:
    """Instant-NGP's density activation."""
    return _TruncExp.apply(x)


class MLP(nn.Module):
    """Linear layers with ReLU between them (none after the last)."""

    def __init__(self, in_dim: int, hidden: int, layers: int, out_dim: int, last_activation: bool = False):
        super().__init__()
        dims = [in_dim] + [hidden] * layers + [out_dim]
        mods: list[nn.Module] = []
        for i in range(len(dims) - 1):
            mods.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2 or last_activation:
                mods.append(nn.ReLU())
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class NeRFField(nn.Module):
    """NeRF's MLP: `depth` layers of `width` on the encoded position, the encoding fed again at
    `skip_layer`; density from the trunk; colour from [trunk features, encoded direction] through
    one `color_width` layer. `integrated=True` takes mip-NeRF's Gaussians (mean, variance) and
    encodes them with the integrated positional encoding."""

    def __init__(self, pos_max_deg: int = 10, dir_max_deg: int = 4, width: int = 256, depth: int = 8,
                 skip_layer: int = 4, color_width: int = 128, integrated: bool = False):
        super().__init__()
        self.integrated = integrated
        self.pos_enc = IntegratedPositionalEncoding(3, pos_max_deg) if integrated else PositionalEncoding(3, pos_max_deg)
        self.dir_enc = PositionalEncoding(3, dir_max_deg)
        pos_dim = self.pos_enc.out_dim
        self.skip_layer = skip_layer
        self.trunk = nn.ModuleList()
        for i in range(depth):
            in_dim = pos_dim if i == 0 else width + (pos_dim if i == skip_layer else 0)
            self.trunk.append(nn.Linear(in_dim, width))
        self.density_head = nn.Linear(width, 1)
        self.bottleneck = nn.Linear(width, width)
        self.color_layer = nn.Linear(width + self.dir_enc.out_dim, color_width)
        self.color_head = nn.Linear(color_width, 3)

    def encode(self, x: Tensor, var: Tensor | None = None) -> Tensor:
        return self.pos_enc(x, var) if self.integrated else self.pos_enc(x)

    def trunk_features(self, enc: Tensor) -> Tensor:
        h = enc
        for i, layer in enumerate(self.trunk):
            if i == self.skip_layer and i > 0:
                h = torch.cat([h, enc], -1)
            h = torch.relu(layer(h))
        return h

    def forward(self, x: Tensor, directions: Tensor, var: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Raw density (..., 1) before activation and colour logits (..., 3), for points x (..., 3)
        (Gaussian means, with `var` their diagonal variances, when integrated)."""
        h = self.trunk_features(self.encode(x, var))
        raw_sigma = self.density_head(h)
        d = self.dir_enc(directions.expand(x.shape[:-1] + (3,)))
        c = torch.relu(self.color_layer(torch.cat([self.bottleneck(h), d], -1)))
        return raw_sigma, self.color_head(c)

    def raw_density(self, x: Tensor, var: Tensor | None = None) -> Tensor:
        return self.density_head(self.trunk_features(self.encode(x, var)))


class HashField(nn.Module):
    """Instant-NGP's field over the box `aabb` (with `unbounded`, over all space contracted into it)."""

    def __init__(self, aabb: Tensor, unbounded: bool = False, levels: int = 16, features: int = 2,
                 log2_size: int = 19, base_res: int = 16, max_res: int = 2048, hidden_dim: int = 64,
                 geo_feat_dim: int = 15, color_hidden: int = 64, color_layers: int = 2, sh_degree: int = 3,
                 appearance_dim: int = 0, num_images: int = 0, backend: str = "auto"):
        super().__init__()
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32))
        self.unbounded, self.geo_feat_dim = unbounded, geo_feat_dim
        self.encoding = HashGridEncoding(levels, features, log2_size, base_res, max_res, backend=backend)
        self.density_mlp = MLP(self.encoding.out_dim, hidden_dim, 1, 1 + geo_feat_dim)
        self.dir_enc = SHDirectionEncoding(sh_degree)
        self.appearance_dim = appearance_dim
        if appearance_dim:
            self.appearance = nn.Embedding(max(num_images, 1), appearance_dim)
            nn.init.normal_(self.appearance.weight, std=0.01)
        self.color_mlp = MLP(self.dir_enc.out_dim + geo_feat_dim + appearance_dim, color_hidden, color_layers, 3)

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Points in [0, 1]^3 for the grid, and whether each point lies in the field's region."""
        if self.unbounded:
            return normalized_contract(x, self.aabb), torch.ones_like(x[..., 0], dtype=torch.bool)
        lo, hi = self.aabb[:3], self.aabb[3:]
        u = (x - lo) / (hi - lo)
        return u, ((u >= 0) & (u <= 1)).all(-1)

    def density_and_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        u, inside = self.normalize(x)
        h = self.density_mlp(self.encoding(u))
        sigma = trunc_exp(h[..., :1] - 1.0) * inside[..., None]
        return sigma, h[..., 1:]

    def density(self, x: Tensor) -> Tensor:
        return self.density_and_features(x)[0]

    def color(self, features: Tensor, directions: Tensor, camera_indices: Tensor | None = None) -> Tensor:
        parts = [self.dir_enc(directions), features]
        if self.appearance_dim:
            if camera_indices is None:  # a view not seen in training: the mean appearance
                emb = self.appearance.weight.mean(0).expand(features.shape[:-1] + (self.appearance_dim,))
            else:
                emb = self.appearance(camera_indices)
            parts.append(emb)
        return torch.sigmoid(self.color_mlp(torch.cat(parts, -1)))

    def forward(self, x: Tensor, directions: Tensor, camera_indices: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Density (..., 1) and colour (..., 3) at points x (..., 3) seen along unit `directions`."""
        sigma, feats = self.density_and_features(x)
        return sigma, self.color(feats, directions, camera_indices)


class HashDensityField(nn.Module):
    """A small hash grid and MLP giving density only: nerfacto's proposal networks."""

    def __init__(self, aabb: Tensor, unbounded: bool = True, levels: int = 5, max_res: int = 128,
                 log2_size: int = 17, hidden: int = 16, backend: str = "auto"):
        super().__init__()
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32))
        self.unbounded = unbounded
        self.encoding = HashGridEncoding(levels, 2, log2_size, 16, max_res, backend=backend)
        self.mlp = MLP(self.encoding.out_dim, hidden, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        if self.unbounded:
            u, inside = normalized_contract(x, self.aabb), torch.ones_like(x[..., 0], dtype=torch.bool)
        else:
            u = (x - self.aabb[:3]) / (self.aabb[3:] - self.aabb[:3])
            inside = ((u >= 0) & (u <= 1)).all(-1)
        return trunc_exp(self.mlp(self.encoding(u)) - 1.0) * inside[..., None]

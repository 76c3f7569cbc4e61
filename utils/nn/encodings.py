"""Input encodings of coordinate networks: positional (NeRF), integrated positional (mip-NeRF),
multiresolution hash grid (Instant-NGP) and spherical harmonics of directions.

Feature order of the two Fourier encodings is the same, so one reduces to the other: for each
frequency 2^l, l = min_deg .. max_deg - 1, the sines of all input dimensions then their cosines,
after the input itself when `include_input`:

    [x, sin(2^l0 x), cos(2^l0 x), sin(2^l1 x), cos(2^l1 x), ...]

(the official NeRF code uses these frequencies without the pi the paper writes.)
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from utils.errors import UserError

__all__ = ["PositionalEncoding", "IntegratedPositionalEncoding", "HashGridEncoding", "SHDirectionEncoding",
           "hash_grid_resolutions", "hash_grid_indices", "HASH_PRIMES", "tcnn_available"]


class PositionalEncoding(nn.Module):
    """gamma(x) = (x, sin(2^l x), cos(2^l x), ...) for l in [min_deg, max_deg) (Mildenhall et al. 2020)."""

    def __init__(self, in_dim: int = 3, max_deg: int = 10, min_deg: int = 0, include_input: bool = True):
        super().__init__()
        self.in_dim, self.min_deg, self.max_deg, self.include_input = in_dim, min_deg, max_deg, include_input
        self.register_buffer("scales", 2.0 ** torch.arange(min_deg, max_deg, dtype=torch.float32), persistent=False)

    @property
    def out_dim(self) -> int:
        return self.in_dim * (2 * (self.max_deg - self.min_deg) + int(self.include_input))

    def forward(self, x: Tensor) -> Tensor:
        scaled = x[..., None, :] * self.scales[:, None].to(x)  # (..., L, D)
        feats = torch.cat([torch.sin(scaled), torch.cos(scaled)], -1).flatten(-2)
        return torch.cat([x, feats], -1) if self.include_input else feats


class IntegratedPositionalEncoding(nn.Module):
    """E[gamma(x)] for x ~ N(mean, diag(var)) (Barron et al. 2021, eq. 14):

        E[sin(2^l x)] = sin(2^l mean) exp(-4^l var / 2),  and the same for cos.

    With var -> 0 it is `PositionalEncoding` without the input (tested).
    """

    def __init__(self, in_dim: int = 3, max_deg: int = 16, min_deg: int = 0):
        super().__init__()
        self.in_dim, self.min_deg, self.max_deg = in_dim, min_deg, max_deg
        self.register_buffer("scales", 2.0 ** torch.arange(min_deg, max_deg, dtype=torch.float32), persistent=False)

    @property
    def out_dim(self) -> int:
        return self.in_dim * 2 * (self.max_deg - self.min_deg)

    def forward(self, mean: Tensor, var: Tensor) -> Tensor:
        s = self.scales[:, None].to(mean)
        scaled = mean[..., None, :] * s  # (..., L, D)
        damp = torch.exp(-0.5 * var[..., None, :] * s * s)
        return torch.cat([torch.sin(scaled) * damp, torch.cos(scaled) * damp], -1).flatten(-2)


class SHDirectionEncoding(nn.Module):
    """Real spherical harmonics of unit directions up to `degree` ((degree + 1)^2 features); degree 3
    gives the 16 features of Instant-NGP's direction encoding (tiny-cuda-nn calls it "degree 4")."""

    def __init__(self, degree: int = 3):
        super().__init__()
        self.degree = degree

    @property
    def out_dim(self) -> int:
        return (self.degree + 1) ** 2

    def forward(self, dirs: Tensor) -> Tensor:
        from utils.rendering.sh import eval_sh_bases

        return eval_sh_bases(self.degree, dirs)


# -- multiresolution hash encoding (Mueller et al. 2022) ----------------------------------------------

HASH_PRIMES = (1, 2_654_435_761, 805_459_861)
"""pi_1, pi_2, pi_3 of the spatial hash h(x) = (x_1 pi_1 XOR x_2 pi_2 XOR x_3 pi_3) mod T (paper, eq. 4)."""


def hash_grid_resolutions(num_levels: int, base_resolution: int, max_resolution: int) -> list[int]:
    """N_l = floor(N_min b^l), b = exp((ln N_max - ln N_min) / (L - 1)) (paper, eqs. 2-3)."""
    if num_levels == 1:
        return [base_resolution]
    growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / (num_levels - 1))
    # a hair of tolerance so that N_min b^(L-1) lands on N_max rather than just below it
    return [int(math.floor(base_resolution * growth ** level + 1e-6)) for level in range(num_levels)]


def hash_grid_indices(corners: Tensor, resolution: int, table_size: int) -> Tensor:
    """Table index of integer grid vertices (..., 3) at one level: a dense 1:1 index while the
    level's (N + 1)^3 vertices fit in the table, the spatial hash otherwise."""
    if (resolution + 1) ** corners.shape[-1] <= table_size:
        stride = torch.tensor([(resolution + 1) ** i for i in range(corners.shape[-1])], device=corners.device)
        return (corners * stride).sum(-1)
    h = corners[..., 0] * HASH_PRIMES[0]
    for i in range(1, corners.shape[-1]):
        h = h ^ (corners[..., i] * HASH_PRIMES[i])
    return h % table_size


def tcnn_available() -> bool:
    """True when tiny-cuda-nn imports and a CUDA GPU is visible."""
    if not torch.cuda.is_available():
        return False
    try:
        import tinycudann  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken optional install is the same as none
        return False
    return True


class HashGridEncoding(nn.Module):
    """Multiresolution hash encoding of points in [0, 1]^3: L levels of F features, at most T =
    2^log2_hashmap_size entries a level, resolutions from `base_resolution` to `max_resolution`
    growing geometrically; trilinear interpolation of the 8 vertices around a point, levels
    concatenated (L * F features). Tables start uniform in [-1e-4, 1e-4] as in the paper.

    backend: "torch" (any device), "tcnn" (tiny-cuda-nn's fused kernels; CUDA), or "auto" (tcnn on
    CUDA when installed). tiny-cuda-nn lays out and scales its levels its own way, so the two
    backends' tables are not interchangeable; a checkpoint records the backend it was trained with.
    """

    def __init__(self, num_levels: int = 16, features_per_level: int = 2, log2_hashmap_size: int = 19,
                 base_resolution: int = 16, max_resolution: int = 2048, in_dim: int = 3, backend: str = "torch"):
        super().__init__()
        if backend not in ("torch", "tcnn", "auto"):
            raise UserError(f"unknown hash-grid backend '{backend}': use torch, tcnn or auto")
        if backend == "tcnn" and not tcnn_available():
            raise UserError("hash-grid backend 'tcnn' needs tiny-cuda-nn and a CUDA GPU: use backend 'torch'")
        self.backend = "tcnn" if backend == "tcnn" or (backend == "auto" and tcnn_available()) else "torch"
        self.num_levels, self.features_per_level = num_levels, features_per_level
        self.table_size, self.in_dim = 2 ** log2_hashmap_size, in_dim
        self.resolutions = hash_grid_resolutions(num_levels, base_resolution, max_resolution)
        if self.backend == "tcnn":
            import tinycudann as tcnn

            growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(num_levels - 1, 1))
            self.tcnn = tcnn.Encoding(in_dim, {"otype": "HashGrid", "n_levels": num_levels,
                                               "n_features_per_level": features_per_level,
                                               "log2_hashmap_size": log2_hashmap_size,
                                               "base_resolution": base_resolution, "per_level_scale": growth})
            return
        sizes = [min((n + 1) ** in_dim, self.table_size) for n in self.resolutions]
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + s)
        self.register_buffer("offsets", torch.tensor(offsets[:-1]), persistent=False)
        self.register_buffer("level_res", torch.tensor(self.resolutions, dtype=torch.float32), persistent=False)
        self.dense_levels = [(n + 1) ** in_dim <= self.table_size for n in self.resolutions]
        self.n_dense = sum(self.dense_levels)  # resolutions grow, so the dense levels come first
        strides = torch.tensor([[(n + 1) ** i for i in range(in_dim)] for n in self.resolutions])
        self.register_buffer("strides", strides, persistent=False)
        self.register_buffer("primes", torch.tensor(HASH_PRIMES[:in_dim]), persistent=False)
        self.table = nn.Parameter(torch.empty(offsets[-1], features_per_level).uniform_(-1e-4, 1e-4))

    @property
    def out_dim(self) -> int:
        return self.num_levels * self.features_per_level

    def indices(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Flat table indices (N, L, 2^D) of the vertices around points x (N, D) in [0, 1], and the
        trilinear weights (N, L, 2^D). Corner c takes bit i of c as its offset along axis i."""
        n, dim = x.shape[0], self.in_dim
        pos = x[:, None, :] * self.level_res[:, None]  # (N, L, D)
        lo_f = torch.floor(pos)
        frac = pos - lo_f
        lo = lo_f.long()
        k = self.n_dense  # levels [0, k) index densely, [k, L) through the hash
        parts = []
        if k > 0:
            both = torch.stack([lo[:, :k], lo[:, :k] + 1], -1) * self.strides[None, :k, :, None]
            parts.append(self._fold(both.unbind(2), torch.add))
        if k < self.num_levels:
            both = torch.stack([lo[:, k:], lo[:, k:] + 1], -1) * self.primes[None, None, :, None]
            parts.append(self._fold(both.unbind(2), torch.bitwise_xor) & (self.table_size - 1))
        idx = (parts[0] if len(parts) == 1 else torch.cat(parts, 1)) + self.offsets[None, :, None]
        w = self._fold(torch.stack([1 - frac, frac], -1).unbind(2), torch.mul)
        return idx, w

    @staticmethod
    def _fold(per_axis, op) -> Tensor:
        """Combine per-axis pairs (..., 2) into the 2^D corners (..., 2^D); axis i becomes bit i."""
        out = per_axis[0]
        for term in per_axis[1:]:
            out = op(term[..., :, None], out[..., None, :]).flatten(-2)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Features (..., L * F) of points x (..., D) in [0, 1]^D (points outside are clamped)."""
        shape = x.shape[:-1]
        flat = x.reshape(-1, self.in_dim)
        if self.backend == "tcnn":
            return self.tcnn(flat.clamp(0, 1)).to(x.dtype).reshape(*shape, self.out_dim)
        flat = flat.clamp(0.0, 1.0)
        idx, w = self.indices(flat)
        if w.requires_grad:  # gradients to the points too (normals): plain autograd
            out = (self.table[idx] * w[..., None].to(self.table.dtype)).sum(-2)
        else:
            out = _InterpolateRows.apply(self.table, idx, w.to(self.table.dtype))
        return out.reshape(*shape, self.out_dim)


class _InterpolateRows(torch.autograd.Function):
    """out[n, l] = sum_c w[n, l, c] table[idx[n, l, c]], with the table's gradient by one index_add
    (several times faster on CPU than the sort-based backward of indexing or F.embedding)."""

    @staticmethod
    def forward(ctx, table: Tensor, idx: Tensor, w: Tensor) -> Tensor:
        ctx.save_for_backward(idx, w)
        ctx.table_rows = table.shape[0]
        rows = table.index_select(0, idx.reshape(-1)).reshape(*idx.shape, table.shape[-1])
        return (rows * w[..., None]).sum(-2)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        idx, w = ctx.saved_tensors
        feats = grad_out.shape[-1]
        contrib = (w[..., None] * grad_out[:, :, None, :]).reshape(-1, feats)
        grad = torch.zeros(ctx.table_rows, feats, dtype=grad_out.dtype, device=grad_out.device)
        grad.index_add_(0, idx.reshape(-1), contrib)
        return grad, None, None

"""Tile-based alpha compositing of projected Gaussians, in pure PyTorch (the CPU backend).

The image is cut into square tiles. Every Gaussian is listed once per tile its screen extent
touches, and the list is sorted by (camera, tile, depth): `isect_tiles` and
`isect_offset_encode`, named after the gsplat kernels. `rasterize_to_pixels` then evaluates each
(Gaussian, tile) intersection on the tile's pixels at once, a dense block of
(intersections x pixels-per-tile), and composites front to back:

    C = sum_i c_i a_i T_i + (1 - sum_i a_i T_i) bg,   T_i = prod_{j<i} (1 - a_j)

T_i is an exclusive cumulative product within a tile's run of intersections; it is taken as a
cumulative sum of log(1 - a) in float64 over the whole sorted list minus its value at the start
of the run, so one `cumsum` serves every tile. Autograd gives the backward pass.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from utils.rendering.splat_projection import ALPHA_THRESHOLD

__all__ = ["isect_tiles", "isect_offset_encode", "rasterize_to_pixels"]

MAX_ALPHA = 0.999
"""Alpha is clamped below 1 so that log(1 - alpha) stays finite (the CUDA kernels clamp at 0.999)."""
MIN_TRANSMITTANCE = 1e-4
"""A pixel stops taking Gaussians once its transmittance would fall below this (early termination)."""


@torch.no_grad()
def isect_tiles(means2d: Tensor, radii: Tensor, depths: Tensor, tile_size: int, tile_width: int,
                tile_height: int) -> tuple[Tensor, Tensor, Tensor]:
    """List the tiles each Gaussian touches, sorted by (camera, tile, depth).

    `means2d` (C, N, 2), `radii` (C, N, 2), `depths` (C, N). Returns `tiles_per_gauss` (C, N),
    `isect_ids` (M,) = camera * n_tiles + tile of every intersection, in sorted order, and
    `flatten_ids` (M,) = camera * N + gaussian of each.
    """
    C, N = depths.shape
    device = means2d.device
    r = radii.to(means2d.dtype)
    lo = torch.floor((means2d - r) / tile_size)
    hi = torch.ceil((means2d + r) / tile_size)
    lo_x, hi_x = lo[..., 0].clamp(0, tile_width).long(), hi[..., 0].clamp(0, tile_width).long()
    lo_y, hi_y = lo[..., 1].clamp(0, tile_height).long(), hi[..., 1].clamp(0, tile_height).long()
    nx, ny = hi_x - lo_x, hi_y - lo_y
    visible = (radii > 0).all(-1)
    counts = torch.where(visible, nx * ny, torch.zeros_like(nx))
    flat_counts = counts.reshape(-1)
    total = int(flat_counts.sum())
    flatten_ids = torch.repeat_interleave(torch.arange(C * N, device=device), flat_counts)
    if total == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return counts, empty, empty
    # position of each intersection inside its Gaussian's tile rectangle
    starts = torch.cumsum(flat_counts, 0) - flat_counts
    local = torch.arange(total, device=device) - starts[flatten_ids]
    w = nx.reshape(-1)[flatten_ids]
    tx = lo_x.reshape(-1)[flatten_ids] + local % w
    ty = lo_y.reshape(-1)[flatten_ids] + local // w
    cam = flatten_ids // N
    isect_ids = cam * (tile_width * tile_height) + ty * tile_width + tx
    # depth order: rank the Gaussians by depth once, then sort intersections by (tile, rank)
    depth_rank = torch.empty(C * N, dtype=torch.long, device=device)
    depth_rank[torch.argsort(depths.reshape(-1), stable=True)] = torch.arange(C * N, device=device)
    order = torch.argsort(isect_ids * (C * N) + depth_rank[flatten_ids], stable=True)
    return counts, isect_ids[order], flatten_ids[order]


@torch.no_grad()
def isect_offset_encode(isect_ids: Tensor, n_cameras: int, tile_width: int, tile_height: int) -> Tensor:
    """Index of the first intersection of every tile, (C, tile_height, tile_width); empty tiles
    point at the next non-empty one, so offsets[t + 1] - offsets[t] counts tile t."""
    n_tiles = n_cameras * tile_width * tile_height
    counts = torch.bincount(isect_ids, minlength=n_tiles)
    offsets = torch.cumsum(counts, 0) - counts
    return offsets.reshape(n_cameras, tile_height, tile_width)


def rasterize_to_pixels(means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor, width: int,
                        height: int, tile_size: int, isect_offsets: Tensor, isect_ids: Tensor,
                        flatten_ids: Tensor, backgrounds: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Composite the sorted intersections into images.

    `means2d` (C, N, 2), `conics` (C, N, 3), `colors` (C, N, D), `opacities` (C, N) (already
    multiplied by any compensation), `backgrounds` (C, D). Returns colours (C, H, W, D) and
    alphas (C, H, W, 1).
    """
    C, N, D = colors.shape
    device, dtype = means2d.device, means2d.dtype
    tile_height, tile_width = isect_offsets.shape[1:]
    P = tile_size * tile_size
    Hp, Wp = tile_height * tile_size, tile_width * tile_size
    out_colors = torch.zeros(C * tile_height * tile_width, P, D, dtype=dtype, device=device)
    out_alphas = torch.zeros(C * tile_height * tile_width, P, dtype=dtype, device=device)
    M = flatten_ids.numel()
    if M > 0:
        n_tiles = tile_height * tile_width
        tile = isect_ids % n_tiles
        ty, tx = tile // tile_width, tile % tile_width
        pix = torch.arange(P, device=device)
        # pixel centres of every (intersection, pixel-in-tile) pair
        px = (tx[:, None] * tile_size + pix[None] % tile_size).to(dtype) + 0.5
        py = (ty[:, None] * tile_size + pix[None] // tile_size).to(dtype) + 0.5
        mean = means2d.reshape(-1, 2)[flatten_ids]
        conic = conics.reshape(-1, 3)[flatten_ids]
        opac = opacities.reshape(-1)[flatten_ids]
        dx, dy = mean[:, 0:1] - px, mean[:, 1:2] - py
        sigma = 0.5 * (conic[:, 0:1] * dx * dx + conic[:, 2:3] * dy * dy) + conic[:, 1:2] * dx * dy
        alpha = torch.clamp_max(opac[:, None] * torch.exp(-sigma), MAX_ALPHA)
        keep = (sigma >= 0) & (alpha >= ALPHA_THRESHOLD) & (px < width) & (py < height)
        alpha = torch.where(keep, alpha, torch.zeros_like(alpha))

        # exclusive transmittance within each tile's run, via one float64 cumsum of log(1 - alpha)
        log_t = torch.log1p(-alpha.double())
        inclusive = torch.cumsum(log_t, dim=0)
        exclusive = inclusive - log_t
        run_start = isect_offsets.reshape(-1)[isect_ids]
        base = exclusive[run_start]
        log_T = exclusive - base
        # early termination: a Gaussian that would push T below the floor is not drawn, nor any after
        drawn = (inclusive - base).detach() >= math.log(MIN_TRANSMITTANCE)
        weights = (alpha * torch.exp(log_T).to(dtype)) * drawn

        out_alphas = out_alphas.index_add(0, isect_ids, weights)
        col = colors.reshape(-1, D)[flatten_ids]
        out_colors = out_colors.index_add(0, isect_ids, weights[:, :, None] * col[:, None, :])

    def untile(x: Tensor) -> Tensor:
        x = x.reshape(C, tile_height, tile_width, tile_size, tile_size, -1).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(C, Hp, Wp, -1)[:, :height, :width]

    render_colors, render_alphas = untile(out_colors), untile(out_alphas[..., None])
    if backgrounds is not None:
        render_colors = render_colors + (1.0 - render_alphas) * backgrounds[:, None, None, :]
    return render_colors, render_alphas

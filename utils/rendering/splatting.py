"""`rasterization`: render 3D Gaussians from cameras, on CPU (compiled or pure PyTorch) or CUDA (gsplat).

The backend is picked from the device of the inputs: gsplat's fused CUDA kernels on a GPU, and
on a CPU our tile rasterizer, whose compositing runs either compiled with numba
(`utils.rendering.splat_numba`, the default) or in pure PyTorch
(`utils.rendering.splat_raster`, the reference the compiled one is tested against). All take the
same arguments and return the same things, and tests check that they agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from utils.rendering.sh import spherical_harmonics
from utils.rendering.splat_projection import fully_fused_projection, quat_scale_to_covar_preci
from utils.rendering import splat_raster, splat_numba
from utils.rendering.splat_raster import isect_offset_encode, isect_tiles

__all__ = ["RasterConfig", "rasterization", "resolve_backend", "RENDER_MODES", "BACKENDS"]

RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]
RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
Backend = Literal["auto", "numba", "torch", "gsplat"]
BACKENDS = ("auto", "numba", "torch", "gsplat")
DEFAULT_TILE_SIZE = {"gsplat": 16, "numba": 16, "torch": 4}
"""Tile side per backend when `RasterConfig.tile_size` is None."""


@dataclass(frozen=True)
class RasterConfig:
    """Settings of the rasterizer shared by training and rendering."""

    near_plane: float = 0.01
    """Gaussians closer to the camera than this (camera-space z) are culled."""
    far_plane: float = 1e10
    """Gaussians farther than this are culled."""
    eps2d: float = 0.3
    """Added to the 2D covariance diagonal: a screen-space low-pass filter of about a pixel."""
    tile_size: int | None = None
    """Side of a screen tile in pixels; None picks 16 for gsplat and numba, and 4 for the torch
    backend, whose cost grows with tile area x intersections (small tiles waste fewer pixels)."""
    antialiased: bool = False
    """Scale opacities by the eps2d compensation (Mip-Splatting's 2D filter) instead of plain 3DGS."""
    backend: Backend = "auto"
    """'auto' (gsplat on CUDA, numba on CPU), 'numba' (compiled CPU kernels), 'torch' (the pure
    PyTorch reference, any device) or 'gsplat' (CUDA)."""


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that renders tensors on `device` for the asked `backend`."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown rasterizer backend '{backend}': use {', '.join(BACKENDS)}")
    if backend == "auto":
        if device.type == "cuda":
            return "gsplat"
        return "numba" if device.type == "cpu" and splat_numba.is_available() else "torch"
    if backend == "gsplat" and device.type != "cuda":
        raise ValueError("the gsplat backend needs CUDA tensors; use backend='numba' or 'torch' on CPU")
    if backend == "numba" and device.type != "cpu":
        raise ValueError(f"the numba backend renders CPU tensors, not {device.type}; use 'gsplat' or 'torch'")
    return backend


def rasterization(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                  viewmats: Tensor, Ks: Tensor, width: int, height: int, sh_degree: int | None = None,
                  backgrounds: Tensor | None = None, render_mode: RenderMode = "RGB",
                  config: RasterConfig = RasterConfig()) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Render N Gaussians from C cameras.

    means (N, 3); quats (N, 4) wxyz, any norm; scales (N, 3) (not logs); opacities (N,) in [0, 1];
    colors (N, D) for plain colours or (N, K, 3) SH coefficients when `sh_degree` is given (the
    rendered colour is then max(SH + 0.5, 0)); viewmats (C, 4, 4) world-to-camera, OpenCV axes;
    Ks (C, 3, 3); backgrounds (C, D) or None (transparent).

    Returns colours (C, H, W, D') where D' follows `render_mode` ('D' accumulated depth, 'ED'
    depth divided by alpha, 'RGB+D' / 'RGB+ED' both), alphas (C, H, W, 1), and an info dict with
    `means2d` (C, N, 2, holds the screen-space gradient after backward), `radii` (C, N, 2),
    `depths`, `width`, `height`, `n_cameras`, `backend`.
    """
    if render_mode not in RENDER_MODES:
        raise ValueError(f"unknown render_mode '{render_mode}': use one of {', '.join(RENDER_MODES)}")
    backend = resolve_backend(config.backend, means.device)
    if backend == "gsplat":
        return _rasterization_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                                     sh_degree, backgrounds, render_mode, config)
    return _rasterization_tiles(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                                sh_degree, backgrounds, render_mode, config, backend)


def _rasterization_tiles(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree,
                         backgrounds, render_mode, config: RasterConfig, backend: str):
    C, N = viewmats.shape[0], means.shape[0]
    # the compiled projection and SH give no gradient to the cameras: with trainable cameras,
    # those two steps run in PyTorch (the compositing stays compiled)
    compiled = backend == "numba" and not (viewmats.requires_grad or Ks.requires_grad)
    kwargs = dict(eps2d=config.eps2d, near_plane=config.near_plane, far_plane=config.far_plane, opacities=opacities,
                  calc_compensations=config.antialiased)
    if compiled:
        radii, means2d, depths, conics, comp = splat_numba.fully_fused_projection(
            means, quats, scales, viewmats, Ks, width, height, **kwargs)
    else:
        covars, _ = quat_scale_to_covar_preci(quats, scales)
        radii, means2d, depths, conics, comp = fully_fused_projection(means, covars, viewmats, Ks, width, height,
                                                                      **kwargs)
    opac = opacities[None].expand(C, N)
    if comp is not None:
        opac = opac * comp

    if sh_degree is not None and compiled:
        feats = splat_numba.sh_colors(sh_degree, means, colors, viewmats)
    elif sh_degree is not None:
        campos = torch.linalg.inv(viewmats)[:, :3, 3]
        dirs = means[None] - campos[:, None]
        feats = torch.clamp_min(spherical_harmonics(sh_degree, dirs, colors[None].expand(C, -1, -1, -1)) + 0.5, 0.0)
    else:
        feats = colors[None].expand(C, -1, -1) if colors.dim() == 2 else colors
    if render_mode in ("RGB+D", "RGB+ED"):
        feats = torch.cat([feats, depths[..., None]], -1)
    elif render_mode in ("D", "ED"):
        feats = depths[..., None]
    if backgrounds is not None and feats.shape[-1] != backgrounds.shape[-1]:
        # depth channels composite over a zero background
        pad = feats.shape[-1] - backgrounds.shape[-1]
        backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, pad)], -1) if pad > 0 else None

    ts = config.tile_size or DEFAULT_TILE_SIZE[backend]
    tile_w, tile_h = math.ceil(width / ts), math.ceil(height / ts)
    if backend == "numba":
        isect_ids, flatten_ids, offsets = splat_numba.isect_tiles(means2d, radii, depths, ts, tile_w, tile_h)
    else:
        _, isect_ids, flatten_ids = isect_tiles(means2d, radii, depths, ts, tile_w, tile_h)
        offsets = isect_offset_encode(isect_ids, C, tile_w, tile_h)
    if means2d.requires_grad:
        means2d.retain_grad()
    raster = splat_numba if backend == "numba" else splat_raster
    render, alphas = raster.rasterize_to_pixels(means2d, conics, feats, opac, width, height, ts, offsets, isect_ids,
                                                flatten_ids, backgrounds)
    if render_mode in ("ED", "RGB+ED"):
        render = torch.cat([render[..., :-1], render[..., -1:] / alphas.clamp(min=1e-10)], -1)
    info = {"means2d": means2d, "radii": radii, "depths": depths, "conics": conics, "width": width,
            "height": height, "n_cameras": C, "backend": backend, "n_isects": int(isect_ids.numel())}
    return render, alphas, info


def _rasterization_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree,
                          backgrounds, render_mode, config: RasterConfig):
    from gsplat import rasterization as gsplat_rasterization

    render, alphas, info = gsplat_rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane=config.near_plane,
        far_plane=config.far_plane, eps2d=config.eps2d, sh_degree=sh_degree, backgrounds=backgrounds,
        render_mode=render_mode, tile_size=config.tile_size or 16, packed=False,
        rasterize_mode="antialiased" if config.antialiased else "classic")
    if info["means2d"].requires_grad:
        info["means2d"].retain_grad()
    info = dict(info)
    info.update(n_cameras=viewmats.shape[0], backend="gsplat")
    return render, alphas, info

"""The numba backend of the CPU rasterizer: autograd functions around compiled kernels.

Three functions with the arguments and results of their pure-PyTorch references, which the tests
compare them with (images within 1e-5, gradients within 1e-4):

- `fully_fused_projection(means, quats, scales, viewmats, Ks, ...)`: the covariance of
  `splat_projection.quat_scale_to_covar_preci` fused with `splat_projection.fully_fused_projection`
  (gsplat fuses them the same way);
- `sh_colors(degree, means, coeffs, viewmats)`: view-dependent colours max(SH + 0.5, 0), as
  `splatting.rasterization` computes them with `sh.spherical_harmonics`;
- `isect_tiles(...)`: `splat_raster.isect_tiles` + `isect_offset_encode` (a counting sort);
- `rasterize_to_pixels(...)`: `splat_raster.rasterize_to_pixels`: per-tile front-to-back
  compositing with early termination, and the matching back-to-front backward, as gsplat's CUDA
  kernels do.

The loops are in `splat_raster_kernels.py` (rasterization) and `splat_projection_kernels.py`
(projection, SH) and run on as many numba threads as `torch.get_num_threads()`. numba compiles
them on first use and caches the machine code beside the source (`__pycache__`), so only the first
run on a machine pays the compilation (about a minute for every kernel and float type).

Why numba and not a C++/OpenMP torch extension: the package installs with `pip install -e .` from
a fresh clone, and a torch extension built at install time needs torch inside pip's isolated build
environment (several GB of CUDA wheels downloaded again, or `--no-build-isolation` for every user
and CI) plus a matching C++ toolchain; numba is one wheel, compiles on the user's machine for its
own CPU, and the loops measured about as fast as the same loops in C++ would need to be to leave
the remaining PyTorch work (loss, optimiser) as the larger part of a training step.
"""
from __future__ import annotations

import os
import threading

import numpy as np
import torch
from torch import Tensor

from utils.rendering.splat_projection import ALPHA_THRESHOLD

__all__ = ["rasterize_to_pixels", "isect_tiles", "fully_fused_projection", "sh_colors", "is_available", "warmup", "MAX_ALPHA"]

MAX_ALPHA = 0.999
"""Alpha is clamped below 1 (as in the reference and the CUDA kernels)."""

_LOCK = threading.Lock()
"""One compiled call at a time: a viewer thread may render while training runs."""

try:  # numba is a dependency of the package; without it the torch reference still renders
    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ:
        # numba's default pick here is its OpenMP layer, whose idle threads spin; beside torch's own
        # OpenMP pool that ran a 15k-Gaussian training step ~10x slower on a 2-core machine. The
        # workqueue layer sleeps when idle; it does not allow concurrent launches, which _LOCK rules out.
        numba.config.THREADING_LAYER = "workqueue"
    from utils.rendering import splat_raster_kernels, splat_projection_kernels
except ImportError:  # pragma: no cover - only on an install without numba
    numba = None


def is_available() -> bool:
    """Whether numba imports, so that the compiled backend can run."""
    return numba is not None


def _require() -> None:
    if numba is None:
        raise RuntimeError("the numba rasterizer backend needs the numba package (pip install numba), "
                           "or use RasterConfig(backend='torch')")


def _set_threads() -> int:
    n = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


def _max_count(isect_offsets: Tensor, flatten_ids: Tensor) -> int:
    """The most intersections of any tile (the size of a tile's staging buffers)."""
    bounds = torch.cat([isect_offsets.reshape(-1).long(), torch.tensor([flatten_ids.numel()])])
    return max(1, int((bounds[1:] - bounds[:-1]).max())) if bounds.numel() > 1 else 1


def _np(x: Tensor) -> np.ndarray:
    return x.detach().contiguous().numpy()


class _RasterizeToPixels(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, width, height, tile_size, isect_offsets, flatten_ids):
        C, N, D = colors.shape
        tile_h, tile_w = isect_offsets.shape[1:]
        dtype = means2d.dtype
        ndt = np.float32 if dtype == torch.float32 else np.float64
        consts = np.array([0.5, ALPHA_THRESHOLD, MAX_ALPHA], dtype=ndt)
        out_colors = np.zeros((C, height, width, D), dtype=ndt)
        out_alphas = np.zeros((C, height, width), dtype=ndt)
        last_ids = np.zeros((C, height, width), dtype=np.int64)
        final_T = np.ones((C, height, width), dtype=np.float64)
        tensors = (means2d.detach().reshape(C * N, 2).contiguous(), conics.detach().reshape(C * N, 3).contiguous(),
                   colors.detach().reshape(C * N, D).contiguous(), opacities.detach().reshape(C * N).contiguous(),
                   isect_offsets.reshape(-1).long().contiguous(), flatten_ids.long().contiguous())
        arrays = tuple(t.numpy() for t in tensors)
        max_count = _max_count(isect_offsets, flatten_ids)
        with _LOCK:
            splat_raster_kernels.forward_kernel(*arrays, tile_size, tile_w, tile_h, width, height, consts,
                                                out_colors, out_alphas, last_ids, final_T, _set_threads(), max_count)
        ctx.geometry = (width, height, tile_size, tile_w, tile_h, C, N, D)
        ctx.consts, ctx.max_count = consts, max_count
        ctx.state = (last_ids, final_T)
        ctx.save_for_backward(*tensors)
        render = torch.from_numpy(out_colors)
        alphas = torch.from_numpy(out_alphas)[..., None]
        return render, alphas

    @staticmethod
    def backward(ctx, v_render, v_alphas):
        width, height, tile_size, tile_w, tile_h, C, N, D = ctx.geometry
        tensors = ctx.saved_tensors
        flatten_ids = tensors[-1]
        last_ids, final_T = ctx.state
        M = flatten_ids.numel()
        v_render = torch.zeros(C, height, width, D) if v_render is None else v_render
        v_alphas = torch.zeros(C, height, width, 1) if v_alphas is None else v_alphas
        tdtype = tensors[0].dtype
        g_means2d = np.zeros((M, 2), dtype=np.float64)
        g_conics = np.zeros((M, 3), dtype=np.float64)
        g_colors = np.zeros((M, D), dtype=np.float64)
        g_opac = np.zeros((M, 1), dtype=np.float64)
        vr = _np(v_render.to(torch.float64))
        va = _np(v_alphas.reshape(C, height, width).to(torch.float64))
        with _LOCK:
            splat_raster_kernels.backward_kernel(*(t.numpy() for t in tensors), tile_size, tile_w, tile_h, width,
                                                 height, ctx.consts, last_ids, final_T, vr, va, g_means2d, g_conics,
                                                 g_colors, g_opac, _set_threads(), ctx.max_count)
        ids = flatten_ids.numpy()

        def gather(rows: np.ndarray, shape: tuple[int, ...]) -> Tensor:
            out = np.zeros((C * N, rows.shape[1]))
            splat_raster_kernels.sum_rows(ids, rows, out)
            return torch.from_numpy(out).to(tdtype).reshape(shape)

        return (gather(g_means2d, (C, N, 2)), gather(g_conics, (C, N, 3)), gather(g_colors, (C, N, D)),
                gather(g_opac, (C, N)), None, None, None, None, None)


@torch.no_grad()
def isect_tiles(means2d: Tensor, radii: Tensor, depths: Tensor, tile_size: int, tile_width: int,
                tile_height: int) -> tuple[Tensor, Tensor, Tensor]:
    """`splat_raster.isect_tiles` followed by `isect_offset_encode`, compiled: returns the sorted
    `isect_ids` (M,), `flatten_ids` (M,) and the tile offsets (C, tile_height, tile_width)."""
    _require()
    C, N = depths.shape
    order = torch.argsort(depths.reshape(-1), stable=True)
    m = means2d.detach().reshape(C * N, 2).contiguous()
    ts = np.array([tile_size], dtype=m.numpy().dtype)[0]
    isect_ids, flatten_ids, offsets = splat_raster_kernels.isect_tiles_kernel(
        m.numpy(), radii.reshape(C * N, 2).to(m.dtype).contiguous().numpy(), order.numpy(), ts, tile_width, tile_height, C)
    return (torch.from_numpy(isect_ids), torch.from_numpy(flatten_ids),
            torch.from_numpy(offsets).reshape(C, tile_height, tile_width))


def rasterize_to_pixels(means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor, width: int,
                        height: int, tile_size: int, isect_offsets: Tensor, isect_ids: Tensor,
                        flatten_ids: Tensor, backgrounds: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Composite the sorted intersections into images, as `splat_raster.rasterize_to_pixels` does
    (same arguments and returns: colours (C, H, W, D), alphas (C, H, W, 1)), with compiled
    forward and backward passes. CPU tensors, float32 or float64."""
    _require()
    render, alphas = _RasterizeToPixels.apply(means2d, conics, colors, opacities, width, height, tile_size,
                                              isect_offsets, flatten_ids)
    if backgrounds is not None:
        render = render + (1.0 - alphas) * backgrounds[:, None, None, :]
    return render, alphas


class _Projection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
                antialiased):
        C, N = viewmats.shape[0], means.shape[0]
        dtype = means.dtype
        ndt = np.float32 if dtype == torch.float32 else np.float64
        inputs = [t.detach().contiguous() for t in (means, quats, scales)]
        cams = [t.detach().to(torch.float64).contiguous() for t in (viewmats, Ks)]
        op = (opacities.detach().contiguous() if opacities is not None else torch.zeros(N, dtype=dtype))
        radii = np.zeros((C, N, 2), dtype=np.int32)
        means2d = np.zeros((C, N, 2), dtype=ndt)
        depths = np.zeros((C, N), dtype=ndt)
        conics = np.zeros((C, N, 3), dtype=ndt)
        comps = np.zeros((C, N), dtype=ndt)
        with _LOCK:
            splat_projection_kernels.projection_forward(
                *(t.numpy() for t in inputs), op.numpy(), *(t.numpy() for t in cams), width, height, float(eps2d),
                float(near_plane), float(far_plane), opacities is not None, bool(antialiased), ALPHA_THRESHOLD,
                radii, means2d, depths, conics, comps, _set_threads())
        ctx.save_for_backward(*inputs, *cams)
        ctx.geometry = (width, height, float(eps2d))
        radii_t = torch.from_numpy(radii)
        ctx.mark_non_differentiable(radii_t)
        return (radii_t, torch.from_numpy(means2d), torch.from_numpy(depths), torch.from_numpy(conics),
                torch.from_numpy(comps))

    @staticmethod
    def backward(ctx, v_radii, v_means2d, v_depths, v_conics, v_comps):
        means, quats, scales, viewmats, Ks = ctx.saved_tensors
        width, height, eps2d = ctx.geometry
        C, N = viewmats.shape[0], means.shape[0]

        def arr(v: Tensor | None, shape: tuple[int, ...]) -> np.ndarray:
            return np.zeros(shape) if v is None else v.detach().to(torch.float64).contiguous().numpy()

        g_means, g_quats, g_scales = np.zeros((N, 3)), np.zeros((N, 4)), np.zeros((N, 3))
        with _LOCK:
            splat_projection_kernels.projection_backward(
                means.numpy(), quats.numpy(), scales.numpy(), viewmats.numpy(), Ks.numpy(), width, height, eps2d,
                arr(v_means2d, (C, N, 2)), arr(v_depths, (C, N)), arr(v_conics, (C, N, 3)), arr(v_comps, (C, N)),
                g_means, g_quats, g_scales, _set_threads())
        dtype = means.dtype
        return (torch.from_numpy(g_means).to(dtype), torch.from_numpy(g_quats).to(dtype),
                torch.from_numpy(g_scales).to(dtype)) + (None,) * 9


def fully_fused_projection(means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, Ks: Tensor, width: int,
                           height: int, eps2d: float = 0.3, near_plane: float = 0.01, far_plane: float = 1e10,
                           opacities: Tensor | None = None, calc_compensations: bool = False
                           ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """`splat_projection.fully_fused_projection` of the covariances of `quats` (wxyz, any norm) and
    `scales` (not logs), compiled: returns radii, means2d, depths, conics, compensations (None
    unless asked for). Gradients reach means, quats and scales (not the cameras)."""
    _require()
    radii, means2d, depths, conics, comps = _Projection.apply(
        means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
        calc_compensations)
    return radii, means2d, depths, conics, (comps if calc_compensations else None)


class _SHColors(torch.autograd.Function):
    @staticmethod
    def forward(ctx, degree, means, coeffs, campos):
        C, N, D = campos.shape[0], means.shape[0], coeffs.shape[2]
        inputs = [t.detach().contiguous() for t in (means, coeffs)]
        campos = campos.detach().to(torch.float64).contiguous()
        out = np.zeros((C, N, D), dtype=inputs[0].numpy().dtype)
        with _LOCK:
            splat_projection_kernels.sh_forward(degree, inputs[0].numpy(), inputs[1].numpy(), campos.numpy(), out,
                                                _set_threads())
        ctx.degree = degree
        ctx.save_for_backward(*inputs, campos)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, v_out):
        means, coeffs, campos = ctx.saved_tensors
        g_means = np.zeros(means.shape)
        g_coeffs = np.zeros(coeffs.shape)
        with _LOCK:
            splat_projection_kernels.sh_backward(ctx.degree, means.numpy(), coeffs.numpy(), campos.numpy(),
                                                 v_out.detach().to(torch.float64).contiguous().numpy(), g_means,
                                                 g_coeffs, _set_threads())
        return None, torch.from_numpy(g_means).to(means.dtype), torch.from_numpy(g_coeffs).to(coeffs.dtype), None


def sh_colors(degree: int, means: Tensor, coeffs: Tensor, viewmats: Tensor) -> Tensor:
    """Colours (C, N, D) = max(SH_degree(normalised means - camera centre) + 0.5, 0) of `coeffs`
    (N, K, D) (only the first (degree + 1)^2 used) seen from world-to-camera `viewmats` (C, 4, 4)."""
    _require()
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be 0..3, got {degree}")
    k = (degree + 1) ** 2
    if coeffs.shape[-2] < k:
        raise ValueError(f"degree {degree} needs {k} coefficients, got {coeffs.shape[-2]}")
    campos = torch.linalg.inv(viewmats.detach().double())[:, :3, 3]
    return _SHColors.apply(degree, means, coeffs, campos)


def warmup(dtypes: tuple[str, ...] = ("float32", "float64")) -> None:
    """Compile (or load from numba's cache) every kernel for inputs of these float types."""
    for dtype in (getattr(torch, name) for name in dtypes):
        means2d = torch.tensor([[[2.0, 2.0]]], dtype=dtype, requires_grad=True)
        conics = torch.tensor([[[1.0, 0.0, 1.0]]], dtype=dtype)
        colors = torch.ones(1, 1, 3, dtype=dtype)
        opac = torch.full((1, 1), 0.5, dtype=dtype)
        offsets = torch.zeros(1, 1, 1, dtype=torch.long)
        ids = torch.zeros(1, dtype=torch.long)
        render, alphas = rasterize_to_pixels(means2d, conics, colors, opac, 4, 4, 4, offsets, ids, ids)
        (render.sum() + alphas.sum()).backward()
        m = torch.tensor([[0.0, 0.0, 3.0]], dtype=dtype, requires_grad=True)
        q = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=dtype, requires_grad=True)
        sc = torch.full((1, 3), 0.1, dtype=dtype, requires_grad=True)
        K = torch.tensor([[[4.0, 0, 2], [0, 4.0, 2], [0, 0, 1]]], dtype=dtype)
        out = fully_fused_projection(m, q, sc, torch.eye(4, dtype=dtype)[None], K, 4, 4,
                                     opacities=torch.full((1,), 0.5, dtype=dtype), calc_compensations=True)
        (out[1].sum() + out[2].sum() + out[3].sum() + out[4].sum()).backward()
        sh_colors(3, m, torch.zeros(1, 16, 3, dtype=dtype, requires_grad=True), torch.eye(4, dtype=dtype)[None]).sum().backward()

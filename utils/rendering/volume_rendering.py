"""Volume rendering along rays (Max 1995; Mildenhall et al. 2020): transmittance, weights, accumulation.

A ray's samples are intervals [t_start, t_end) with a density sigma (or an opacity alpha). With
delta = t_end - t_start:

    alpha_i = 1 - exp(-sigma_i delta_i)
    T_i     = exp(-sum_{j<i} sigma_j delta_j) = prod_{j<i} (1 - alpha_j)     (transmittance)
    w_i     = T_i alpha_i                                                  (weights)
    C       = sum_i w_i c_i + (1 - sum_i w_i) background

Every function takes samples in one of two layouts:

- **padded**: tensors (..., S), the same number of samples on every ray;
- **packed**: flat tensors (N,) of all samples, with `ray_indices` (N,) saying which ray each
  belongs to and `n_rays`. A ray's samples are contiguous and ordered front to back (what the
  samplers in `utils.rendering` return), so rays may have different numbers of samples.

Backends: the pure-PyTorch code runs on any device. On CUDA, when nerfacc is installed, the
packed prefix sums use its kernels (`backend="auto"`; force either with "torch" or "nerfacc").
The two agree to float rounding (tests/utils/rendering/test_volume_rendering.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from utils.errors import UserError

__all__ = ["RenderedRays", "packed_info", "exclusive_sum", "transmittance_from_density", "weights_from_density",
           "transmittance_from_alpha", "weights_from_alpha", "visibility_from_density", "accumulate_along_rays",
           "volume_render", "nerfacc_available"]

BACKENDS = ("auto", "torch", "nerfacc")


def nerfacc_available() -> bool:
    """True when nerfacc imports and can run its CUDA kernels here."""
    if not torch.cuda.is_available():
        return False
    try:
        import nerfacc  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken optional install is the same as none
        return False
    return True


def _use_nerfacc(backend: str, x: Tensor, packed: bool) -> bool:
    if backend not in BACKENDS:
        raise UserError(f"unknown volume-rendering backend '{backend}': use one of {', '.join(BACKENDS)}")
    if backend == "torch" or not packed:
        return False
    if backend == "nerfacc":
        if not x.is_cuda or not nerfacc_available():
            raise UserError("backend 'nerfacc' needs CUDA tensors and nerfacc installed: use backend 'torch' or 'auto'")
        return True
    return x.is_cuda and nerfacc_available()


def _check_layout(x: Tensor, ray_indices: Tensor | None, n_rays: int | None) -> None:
    if ray_indices is None:
        return
    if x.dim() != 1 or ray_indices.shape != x.shape:
        raise UserError(f"packed samples must be flat and match ray_indices: got {tuple(x.shape)} and "
                        f"{tuple(ray_indices.shape)}")
    if n_rays is None:
        raise UserError("packed samples need n_rays (the number of rays) next to ray_indices")


def packed_info(ray_indices: Tensor, n_rays: int) -> Tensor:
    """(n_rays, 2) long: the first sample of each ray and its number of samples (nerfacc's layout)."""
    counts = torch.bincount(ray_indices.long(), minlength=n_rays)[:n_rays]
    starts = torch.cumsum(counts, 0) - counts
    return torch.stack([starts, counts], -1)


def exclusive_sum(x: Tensor, ray_indices: Tensor | None = None, n_rays: int | None = None,
                  backend: str = "auto") -> Tensor:
    """sum_{j<i} x_j along each ray, padded (..., S) or packed (N,)."""
    _check_layout(x, ray_indices, n_rays)
    if ray_indices is None:
        return torch.cumsum(x, -1) - x
    if _use_nerfacc(backend, x, True):
        import nerfacc

        return nerfacc.exclusive_sum(x, packed_info=packed_info(ray_indices, n_rays))
    if x.numel() == 0:
        return x.clone()
    # one running sum over all samples, minus its value where each ray starts; in float64 so that
    # subtracting two large running totals keeps the small per-ray ones exact to float32
    wide = torch.cumsum(x.double(), 0)
    before = wide - x.double()
    info = packed_info(ray_indices, n_rays)
    first = before[info[:, 0].clamp(max=x.numel() - 1)]
    return (before - first[ray_indices.long()]).to(x.dtype)


def transmittance_from_density(t_starts: Tensor, t_ends: Tensor, sigmas: Tensor, ray_indices: Tensor | None = None,
                               n_rays: int | None = None, backend: str = "auto") -> tuple[Tensor, Tensor]:
    """(transmittance T_i, opacity alpha_i) of each sample, from densities and interval ends."""
    sigma_delta = sigmas * (t_ends - t_starts)
    alphas = 1.0 - torch.exp(-sigma_delta)
    trans = torch.exp(-exclusive_sum(sigma_delta, ray_indices, n_rays, backend))
    return trans, alphas


def weights_from_density(t_starts: Tensor, t_ends: Tensor, sigmas: Tensor, ray_indices: Tensor | None = None,
                         n_rays: int | None = None, backend: str = "auto") -> tuple[Tensor, Tensor, Tensor]:
    """(weights w_i, transmittance T_i, opacity alpha_i) from densities."""
    trans, alphas = transmittance_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays, backend)
    return trans * alphas, trans, alphas


def transmittance_from_alpha(alphas: Tensor, ray_indices: Tensor | None = None, n_rays: int | None = None,
                             backend: str = "auto") -> Tensor:
    """prod_{j<i} (1 - alpha_j) along each ray."""
    _check_layout(alphas, ray_indices, n_rays)
    if ray_indices is None:
        keep = 1.0 - alphas
        return torch.cumprod(torch.cat([torch.ones_like(keep[..., :1]), keep[..., :-1]], -1), -1)
    if _use_nerfacc(backend, alphas, True):
        import nerfacc

        return nerfacc.exclusive_prod(1.0 - alphas, packed_info=packed_info(ray_indices, n_rays))
    # a product as the exponential of a sum of logs; a fully opaque sample (alpha = 1) is kept
    # at a tiny transmittance rather than log(0)
    logs = torch.log((1.0 - alphas).clamp_min(1e-30))
    return torch.exp(exclusive_sum(logs, ray_indices, n_rays, backend="torch"))


def weights_from_alpha(alphas: Tensor, ray_indices: Tensor | None = None, n_rays: int | None = None,
                       backend: str = "auto") -> tuple[Tensor, Tensor]:
    """(weights w_i, transmittance T_i) from opacities."""
    trans = transmittance_from_alpha(alphas, ray_indices, n_rays, backend)
    return trans * alphas, trans


def visibility_from_density(t_starts: Tensor, t_ends: Tensor, sigmas: Tensor, ray_indices: Tensor | None = None,
                            n_rays: int | None = None, early_stop_eps: float = 1e-4, alpha_thre: float = 0.0,
                            backend: str = "auto") -> Tensor:
    """Which samples matter: transmittance above `early_stop_eps` and opacity above `alpha_thre`."""
    trans, alphas = transmittance_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays, backend)
    visible = trans >= early_stop_eps
    if alpha_thre > 0:
        visible &= alphas >= alpha_thre
    return visible


def accumulate_along_rays(weights: Tensor, values: Tensor | None = None, ray_indices: Tensor | None = None,
                          n_rays: int | None = None) -> Tensor:
    """sum_i w_i v_i per ray: (..., D) padded or (n_rays, D) packed; `values=None` sums the weights (D = 1)."""
    src = weights[..., None] if values is None else weights[..., None] * values
    if ray_indices is None:
        return src.sum(-2)
    _check_layout(weights, ray_indices, n_rays)
    out = torch.zeros(n_rays, src.shape[-1], dtype=src.dtype, device=src.device)
    return out.index_add(0, ray_indices.long(), src)


@dataclass
class RenderedRays:
    """What `volume_render` returns for a batch of rays."""

    rgb: Tensor
    """Colour per ray (R, 3), composited on the background when one was given."""
    opacity: Tensor
    """Accumulated weight sum_i w_i per ray (R, 1)."""
    depth: Tensor
    """Expected depth sum_i w_i t_i / sum_i w_i per ray (R, 1), t_i the interval midpoint."""
    weights: Tensor
    """Per-sample weights, in the layout of the input."""
    trans: Tensor
    """Per-sample transmittance."""
    alphas: Tensor
    """Per-sample opacity."""


def volume_render(t_starts: Tensor, t_ends: Tensor, sigmas: Tensor, rgbs: Tensor, ray_indices: Tensor | None = None,
                  n_rays: int | None = None, background: Tensor | None = None, backend: str = "auto") -> RenderedRays:
    """Composite samples into colour, opacity and depth per ray.

    Padded inputs: t_starts, t_ends, sigmas (R, S), rgbs (R, S, 3). Packed: (N,) and (N, 3) with
    ray_indices and n_rays. `background` is (3,) or (R, 3).
    """
    weights, trans, alphas = weights_from_density(t_starts, t_ends, sigmas, ray_indices, n_rays, backend)
    rgb = accumulate_along_rays(weights, rgbs, ray_indices, n_rays)
    opacity = accumulate_along_rays(weights, None, ray_indices, n_rays)
    mids = (t_starts + t_ends)[..., None] * 0.5
    depth = accumulate_along_rays(weights, mids, ray_indices, n_rays) / opacity.clamp_min(torch.finfo(rgb.dtype).eps)
    if background is not None:
        rgb = rgb + background * (1.0 - opacity)
    return RenderedRays(rgb, opacity, depth, weights, trans, alphas)

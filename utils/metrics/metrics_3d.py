"""Metrics of 3D generation and reconstruction.

Renders (B, C, H, W) in [0, 1]: `render_psnr`, `render_ssim`, `render_lpips` (the image metrics of
`utils.metrics.image_metrics` and `utils.metrics.lpips`, with the conventions NeRF / 3DGS papers report).
Point clouds (N, 3) or (B, N, 3): `chamfer_distance`, `f_score` at a distance threshold.
Voxels (..., D, H, W): `voxel_iou` of occupancy grids.
"""
from __future__ import annotations

import torch

from utils.metrics.image_metrics import psnr, ssim
from utils.errors import UserError

__all__ = ["render_psnr", "render_ssim", "render_lpips", "chamfer_distance", "f_score", "voxel_iou",
           "nearest_distances"]


def render_psnr(render: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per view of renders in [0, 1]."""
    return psnr(render.clamp(0, 1), target, data_range=1.0)


def render_ssim(render: torch.Tensor, target: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """SSIM per view of renders in [0, 1] (padding='zeros' reproduces the 3DGS paper's code)."""
    return ssim(render.clamp(0, 1), target, data_range=1.0, padding=padding)


_lpips_cache: dict = {}


def render_lpips(render: torch.Tensor, target: torch.Tensor, net: str = "vgg", model=None) -> torch.Tensor:
    """LPIPS per view of renders in [0, 1] (VGG by default, as NeRF / 3DGS papers report).

    `model` is an `utils.metrics.lpips.LPIPS`; by default the pretrained one (cached per net and device).
    """
    from utils.metrics.lpips import LPIPS

    if model is None:
        key = (net, str(render.device))
        if key not in _lpips_cache:
            _lpips_cache[key] = LPIPS.from_pretrained(net, device=render.device)
        model = _lpips_cache[key]
    with torch.no_grad():
        return model(render.clamp(0, 1) * 2 - 1, target * 2 - 1)


def _batched(points: torch.Tensor, name: str) -> torch.Tensor:
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[-1] != 3 or points.shape[1] == 0:
        raise UserError(f"{name}: expected (N, 3) or (B, N, 3) points, got shape {tuple(points.shape)}")
    return points


def nearest_distances(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """For each point of a (B, N, 3), the Euclidean distance to its nearest point of b (B, M, 3)."""
    out = []
    for i in range(0, a.shape[1], chunk):  # chunks bound the (chunk x M) distance matrix
        out.append(torch.cdist(a[:, i:i + chunk].double(), b.double()).min(-1).values)
    return torch.cat(out, 1)


def chamfer_distance(a: torch.Tensor, b: torch.Tensor, squared: bool = True) -> torch.Tensor:
    """Symmetric Chamfer distance per cloud, shape (B,): mean_a min_b d + mean_b min_a d.

    `squared=True` (default) uses squared distances, as most 3D generation papers (and
    pytorch3d's `chamfer_distance`) do; `squared=False` uses plain Euclidean distances.
    The sum of the two directions is reported (not their average).
    """
    a, b = _batched(a, "chamfer_distance"), _batched(b, "chamfer_distance")
    da, db = nearest_distances(a, b), nearest_distances(b, a)
    if squared:
        da, db = da ** 2, db ** 2
    return (da.mean(1) + db.mean(1)).to(a.dtype if a.is_floating_point() else torch.float32)


def f_score(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.01) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(F-score, precision, recall) per cloud at distance `threshold` (Tatarchenko et al. 2019).

    precision: share of predicted points within `threshold` of the target; recall: share of target
    points within `threshold` of the prediction; F = 2 P R / (P + R) (0 when both are 0).
    """
    pred, target = _batched(pred, "f_score"), _batched(target, "f_score")
    precision = (nearest_distances(pred, target) < threshold).double().mean(1)
    recall = (nearest_distances(target, pred) < threshold).double().mean(1)
    denom = precision + recall
    f = torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-12), torch.zeros_like(denom))
    return f.float(), precision.float(), recall.float()


def voxel_iou(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Intersection over union of occupancy grids. Inputs (D, H, W) or (B, D, H, W), boolean or
    occupancy probabilities (occupied where > `threshold`); returns (B,). Two empty grids give 1."""
    if pred.shape != target.shape:
        raise UserError(f"voxel_iou: grids differ in shape ({tuple(pred.shape)} vs {tuple(target.shape)})")
    if pred.ndim == 3:
        pred, target = pred[None], target[None]
    p = pred if pred.dtype == torch.bool else pred > threshold
    t = target if target.dtype == torch.bool else target > threshold
    inter = (p & t).flatten(1).sum(1).double()
    union = (p | t).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)).float()

"""3D consistency of rendered views: reprojection agreement through rendered depth.

View A's pixels are lifted to 3D with A's depth (distance along each ray, as the triplane renderer and
the built-in multi-view set give it), projected into view B, and B's image is read there (bilinear).
`reprojection_error` is the mean absolute colour difference over the pixels that land inside B and
are covered in A (`mask_a`); `consistency_score` is the percentage of those pixels that agree within
`tolerance` (colours in [-1, 1]). Views of one consistent scene score near 100; views of different
scenes, or a generator whose views disagree, score lower. Given B's depth too, pixels of A that B does
not see (occluded) are left out; without it they count as disagreements (a lower bound).

The score alone rewards featureless renders: a constant (or heavily blurred) image agrees with itself
under any reprojection, so an untrained generator scores ~96%. `consistency_report` therefore gives,
with the score, its **chance** level: the same agreement test between A's valid pixels and B's
reprojected colours at randomly drawn other valid pixels of the same image (the correspondence broken,
the colour distributions kept), and the **gap** = score - chance, in percentage points: the part of the
agreement the geometry explains. A constant render has score = chance = 100 and a gap of 0; two views of
one textured scene have a high score, a low chance level and a large gap. Compare generators by the gap.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.rendering.camera_labels import label_cameras, project_points
from utils.rendering.cameras import camera_rays

__all__ = ["reproject", "reprojection_error", "normalized_reprojection_error", "consistency_score",
           "consistency_report"]


def reproject(image_b: Tensor, depth_a: Tensor, label_a: Tensor, label_b: Tensor, depth_b: Tensor | None = None,
              occlusion_tolerance: float = 0.02) -> tuple[Tensor, Tensor]:
    """(B's image seen from A (N, C, H, W), validity (N, 1, H, W)) for depth_a (N, 1, H, W) along A's rays.
    With `depth_b`, a point of A counts only where B sees it (its distance from B's centre within
    `occlusion_tolerance` (relative) of B's depth there): occluded pixels are left out."""
    N, _, H, W = depth_a.shape
    origins, dirs = camera_rays(label_cameras(label_a.float(), H))
    points = (origins + dirs * depth_a.permute(0, 2, 3, 1)).reshape(N, -1, 3)
    uv, z = project_points(label_b.float(), points)
    grid = (uv * 2 - 1).reshape(N, H, W, 2)
    warped = F.grid_sample(image_b, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = ((uv >= 0) & (uv <= 1)).all(-1) & (z > 0)
    if depth_b is not None:
        centre_b = torch.linalg.inv(label_b[:, :16].reshape(-1, 4, 4).float())
        centre_b = torch.linalg.inv(centre_b)[:, None, :3, 3]
        dist = (points - centre_b).norm(dim=-1)
        seen = F.grid_sample(depth_b, grid, mode="nearest", padding_mode="border", align_corners=False)
        inside = inside & ((seen.reshape(N, -1) - dist).abs() <= occlusion_tolerance * dist)
    return warped, inside.reshape(N, 1, H, W).to(image_b.dtype)


def reprojection_error(image_a: Tensor, depth_a: Tensor, label_a: Tensor, image_b: Tensor, label_b: Tensor,
                       mask_a: Tensor | None = None, depth_b: Tensor | None = None) -> Tensor:
    """Mean |A - B reprojected into A| over valid pixels (a differentiable loss; 0 if none is valid)."""
    warped, valid = reproject(image_b, depth_a, label_a, label_b, depth_b)
    if mask_a is not None:
        valid = valid * mask_a
    diff = (image_a - warped).abs().mean(1, keepdim=True) * valid
    return diff.sum() / valid.sum().clamp_min(1.0)


def normalized_reprojection_error(image_a: Tensor, depth_a: Tensor, label_a: Tensor, image_b: Tensor,
                                  label_b: Tensor, mask_a: Tensor | None = None, depth_b: Tensor | None = None,
                                  generator: torch.Generator | None = None, eps: float = 1e-3) -> Tensor:
    """`reprojection_error` over its chance level (differentiable): the mean |A - B reprojected| at matching
    pixels divided by the same mean with the correspondence broken (each valid pixel of A against B's
    reprojected colour at a random other valid pixel, one permutation per image drawn from `generator`).
    ~1 for views that agree no better than chance, 0 for exact agreement. Scaling the colour differences
    leaves it unchanged, so, unlike the plain error, flattening the render does not lower it: the
    loss form of the gap of `consistency_report`."""
    warped, valid = reproject(image_b, depth_a, label_a, label_b, depth_b)
    if mask_a is not None:
        valid = valid * mask_a
    err = ((image_a - warped).abs().mean(1, keepdim=True) * valid).sum() / valid.sum().clamp_min(1.0)
    N, C, H, W = image_a.shape
    perm = torch.stack([torch.randperm(H * W, generator=generator) for _ in range(N)]).to(image_a.device)
    v = valid.flatten(2)
    shuffled = warped.flatten(2).gather(2, perm[:, None].expand(N, C, H * W))
    pair = v * v.gather(2, perm[:, None])
    chance = ((image_a.flatten(2) - shuffled).abs().mean(1, keepdim=True) * pair).sum() / pair.sum().clamp_min(1.0)
    return err / chance.clamp_min(eps)


@torch.no_grad()
def consistency_score(image_a: Tensor, depth_a: Tensor, label_a: Tensor, image_b: Tensor, label_b: Tensor,
                      mask_a: Tensor | None = None, tolerance: float = 0.1, depth_b: Tensor | None = None) -> float:
    """Percentage (0-100) of valid pixels of A whose colour B, reprojected, matches within `tolerance`."""
    warped, valid = reproject(image_b, depth_a, label_a, label_b, depth_b)
    if mask_a is not None:
        valid = valid * mask_a
    agree = ((image_a - warped).abs().amax(1, keepdim=True) <= tolerance).to(valid.dtype) * valid
    return float(100.0 * agree.sum() / valid.sum().clamp_min(1.0))


def _agreement_counts(image_a: Tensor, warped: Tensor, valid: Tensor, tolerance: float, pairs: int,
                      seed: int) -> tuple[float, float, float, float]:
    """(agreeing pixels, valid pixels, agreeing random pairs, random pairs) summed over the batch."""
    close = lambda x, y: ((x - y).abs().amax(0) <= tolerance)  # noqa: E731  (C, P) -> (P,)
    gen = torch.Generator().manual_seed(seed)
    agree = total = chance = drawn = 0.0
    for a, w, v in zip(image_a, warped, valid):
        idx = v.flatten().nonzero().flatten()
        if len(idx) == 0:
            continue
        a, w = a.flatten(1)[:, idx], w.flatten(1)[:, idx]
        agree, total = agree + float(close(a, w).sum()), total + len(idx)
        i = torch.randint(len(idx), (pairs * len(idx),), generator=gen)
        j = torch.randint(len(idx), (pairs * len(idx),), generator=gen)
        chance, drawn = chance + float(close(a[:, i], w[:, j]).sum()), drawn + len(i)
    return agree, total, chance, drawn


@torch.no_grad()
def consistency_report(image_a: Tensor, depth_a: Tensor, label_a: Tensor, image_b: Tensor, label_b: Tensor,
                       mask_a: Tensor | None = None, tolerance: float = 0.1, depth_b: Tensor | None = None,
                       pairs: int = 4, seed: int = 0) -> dict[str, float]:
    """{"score", "chance", "gap", "pixels"}: the consistency score (percent, as `consistency_score`), its chance
    level (percent of `pairs` x valid-pixel random pairs (A's pixel, B's reprojected colour at another valid
    pixel of the same image, seeded by `seed`) that agree within `tolerance`), gap = score - chance
    (percentage points) and the number of valid pixels. 0 everywhere when no pixel is valid."""
    warped, valid = reproject(image_b, depth_a, label_a, label_b, depth_b)
    if mask_a is not None:
        valid = valid * mask_a
    agree, total, chance, drawn = _agreement_counts(image_a.float(), warped.float(), valid > 0, tolerance, pairs,
                                                    seed)
    score = 100.0 * agree / max(total, 1.0)
    level = 100.0 * chance / max(drawn, 1.0)
    return {"score": score, "chance": level, "gap": score - level, "pixels": total}

"""Losses on the weights along rays: mip-NeRF 360's interlevel (proposal) and distortion losses.

Both take bins (R, S + 1) of distances and weights (R, S) on them.

- `interlevel_loss` (Barron et al. 2022, eq. 13): the proposal weights must bound the NeRF
  weights from above: for every NeRF interval, the proposal weight mass over the intervals that
  overlap it (the "outer measure") should be at least the NeRF weight; the excess of the NeRF
  weight is penalised as max(0, w - outer)^2 / (w + eps).
- `distortion_loss` (eq. 15): pulls each ray's weights together into a compact, thin surface,
  sum_ij w_i w_j |s_i - s_j| + 1/3 sum_i w_i^2 (s_{i+1} - s_i), in normalised distance s.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ["outer_measure", "interlevel_loss", "distortion_loss"]


def outer_measure(t: Tensor, t_env: Tensor, w_env: Tensor) -> Tensor:
    """For each interval of `t` (R, S + 1), the total of `w_env` (R, M) over the intervals of
    `t_env` (R, M + 1) that overlap it."""
    cum = torch.cat([torch.zeros_like(w_env[..., :1]), torch.cumsum(w_env, -1)], -1)
    lo = torch.searchsorted(t_env.contiguous(), t[..., :-1].contiguous(), right=True) - 1
    hi = torch.searchsorted(t_env.contiguous(), t[..., 1:].contiguous(), right=False)
    lo = lo.clamp(0, cum.shape[-1] - 1)
    hi = hi.clamp(0, cum.shape[-1] - 1)
    return cum.gather(-1, hi) - cum.gather(-1, lo)


def interlevel_loss(nerf_bins: Tensor, nerf_weights: Tensor, proposal_bins: Sequence[Tensor],
                    proposal_weights: Sequence[Tensor], eps: float = 1e-7) -> Tensor:
    """Mean over rays and proposal levels of the excess of the (fixed) NeRF weights over the
    proposal outer measure."""
    w = nerf_weights.detach()
    t = nerf_bins.detach()
    total = torch.zeros((), dtype=w.dtype, device=w.device)
    for bins, weights in zip(proposal_bins, proposal_weights):
        outer = outer_measure(t, bins.detach(), weights)
        total = total + (torch.clamp(w - outer, min=0) ** 2 / (w + eps)).sum(-1).mean()
    return total


def distortion_loss(bins: Tensor, weights: Tensor, near: Tensor | None = None, far: Tensor | None = None) -> Tensor:
    """Mean over rays of the distortion loss; distances are rescaled to [0, 1] by near/far (R, 1)
    when given (the paper's normalised s)."""
    s = bins
    if near is not None and far is not None:
        s = (bins - near) / (far - near).clamp_min(1e-12)
    mids = 0.5 * (s[..., 1:] + s[..., :-1])
    widths = s[..., 1:] - s[..., :-1]
    # sum_ij w_i w_j |m_i - m_j| in O(S): 2 sum_i w_i (m_i W_<i - WM_<i)
    w_cum = torch.cumsum(weights, -1) - weights
    wm_cum = torch.cumsum(weights * mids, -1) - weights * mids
    pairs = 2 * (weights * (mids * w_cum - wm_cum)).sum(-1)
    own = (weights ** 2 * widths).sum(-1) / 3
    return (pairs + own).mean()

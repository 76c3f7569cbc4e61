"""Imagen's dynamic thresholding of x0 predictions (Saharia et al. 2022, sec. 2.3).

With large guidance weights the predicted clean image x0 leaves [-1, 1]; static clipping then
saturates it. Dynamic thresholding picks, per sample, s = the `percentile` quantile of |x0| (over all
its pixels and channels); when s > 1 it clips x0 to [-s, s] and divides by s, pulling saturated
pixels inwards. The schedulers (`DDPM`, `DDIM`, `LCM`, DPM-Solver with `thresholding=True`) call
`dynamic_threshold`; diffusers' variant also caps s at `max_value` (`sample_max_value`: 1.5 for
DeepFloyd IF stage I, 1.0 for its super-resolution stages); `max_value=inf` is the paper's rule.
"""
from __future__ import annotations

import math

import torch


def dynamic_threshold(x0: torch.Tensor, percentile: float = 0.995, max_value: float = math.inf) -> torch.Tensor:
    """x0 (B, ...) -> clip(x0, -s, s) / s per sample, s = max(1, quantile(|x0|, percentile)) (capped at
    max_value). Computed in float32, returned in x0's dtype."""
    dtype, shape = x0.dtype, x0.shape
    flat = x0.float().reshape(shape[0], -1)
    s = torch.quantile(flat.abs(), percentile, dim=1).clamp(min=1.0, max=max_value)[:, None]
    return (torch.clamp(flat, -s, s) / s).reshape(shape).to(dtype)


__all__ = ["dynamic_threshold"]

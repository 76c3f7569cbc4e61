"""Adaptive-norm (AdaLN) modulation: a conditioning vector sets per-channel shift, scale and gate.

DiT, SD3, FLUX, video transformers: y = norm(x) * (1 + scale) + shift, then x + gate * block(y).
"""
from __future__ import annotations

from typing import NamedTuple

import torch


def _tokens(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # (B, D) parameters broadcast over the token axis of (B, L, D) activations.
    return p.unsqueeze(1) if p.ndim == 2 and x.ndim == 3 else p


def modulate(x: torch.Tensor, shift: torch.Tensor | None, scale: torch.Tensor) -> torch.Tensor:
    """x * (1 + scale) + shift; (B, D) shift/scale are broadcast over the tokens of (B, L, D) x."""
    out = x * (1 + _tokens(scale, x))
    return out if shift is None else out + _tokens(shift, x)


def gate(residual: torch.Tensor, g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """residual + g * y, with (B, D) gates broadcast over tokens."""
    return residual + _tokens(g, y) * y


class ModulationOut(NamedTuple):
    shift: torch.Tensor
    scale: torch.Tensor
    gate: torch.Tensor


__all__ = ["ModulationOut", "gate", "modulate"]

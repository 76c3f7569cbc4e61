"""Adaptive-norm (AdaLN) modulation: a conditioning vector sets per-channel shift, scale and gate.

DiT, SD3, FLUX, video transformers: y = norm(x) * (1 + scale) + shift, then x + gate * block(y).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


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


class AdaLNModulation(nn.Module):
    """SiLU -> Linear(dim, n_chunks * out_dim), split into `n_chunks` (B, 1, out_dim) tensors.

    The chunk order is the checkpoint's (e.g. FLUX and DiT: shift, scale, gate per set; the final
    layer of SD3/FLUX: scale, shift), so callers name the chunks; `sets()` groups them as
    (shift, scale, gate) triples for the common case.
    """

    def __init__(self, dim: int, n_chunks: int, out_dim: int | None = None, bias: bool = True):
        super().__init__()
        self.n_chunks = n_chunks
        self.act = nn.SiLU()
        self.linear = nn.Linear(dim, n_chunks * (out_dim or dim), bias=bias)

    def forward(self, cond: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.linear(self.act(cond))
        if out.ndim == 2:
            out = out[:, None, :]
        return out.chunk(self.n_chunks, dim=-1)

    def sets(self, cond: torch.Tensor) -> list[ModulationOut]:
        """(shift, scale, gate) triples; needs n_chunks divisible by 3."""
        chunks = self(cond)
        if self.n_chunks % 3:
            raise ValueError(f"sets() needs a multiple of 3 chunks, this module has {self.n_chunks}")
        return [ModulationOut(*chunks[i:i + 3]) for i in range(0, self.n_chunks, 3)]


__all__ = ["AdaLNModulation", "ModulationOut", "gate", "modulate"]

"""Seeded noise: drawn on the CPU in float32, then moved, so a seed gives the same image on any device.

A batch may carry one generator per sample (a list): each image then depends only on its own seed,
not on what else is in the batch.
"""
from __future__ import annotations

from typing import Sequence

import torch

from utils.torch_utils import make_generator, randn as _randn

Generators = torch.Generator | Sequence[torch.Generator] | None


def randn(shape: Sequence[int], generator: Generators = None, device: torch.device | str = "cpu",
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise of `shape`; with a list of generators, one per leading index."""
    shape = tuple(shape)
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        return torch.cat([_randn((1, *shape[1:]), g, device, dtype) for g in generator], dim=0)
    return _randn(shape, generator, device, dtype)


def randn_like(x: torch.Tensor, generator: Generators = None) -> torch.Tensor:
    return randn(x.shape, generator, x.device, x.dtype)


def generators(seed: int | Sequence[int] | None, batch: int | None = None) -> torch.Generator | list[torch.Generator]:
    """One CPU generator for `seed`, or one per seed (seed, seed+1, ... when `batch` is given)."""
    if isinstance(seed, (list, tuple)):
        return [make_generator(s) for s in seed]
    if batch is not None:
        base = int(torch.randint(0, 2**31 - 1, (1,)).item()) if seed is None else int(seed)
        return [make_generator(base + i) for i in range(batch)]
    return make_generator(seed)


def initial_noise(shape: Sequence[int], seed_or_generator: int | Generators = None, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32, init_sigma: float | torch.Tensor = 1.0) -> torch.Tensor:
    """The starting latents of a sampling run: noise * the scheduler's initial sigma."""
    gen = seed_or_generator
    if gen is None or isinstance(gen, int):
        gen = make_generator(gen)
    return randn(shape, gen, device, dtype) * init_sigma


__all__ = ["generators", "initial_noise", "make_generator", "randn", "randn_like"]

"""Randomness as a pure function of (seed, step, rank): exact resume without saved RNG state."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_step(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """Seed every global RNG from (seed, step, rank) and return a CPU generator for the step.

    Randomness that is a pure function of the step makes resume exact without saving RNG state.
    """
    s = (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63 - 1)
    random.seed(s)
    np.random.seed(s % (2**32))
    torch.manual_seed(s)
    gen = torch.Generator("cpu")
    gen.manual_seed(s)
    return gen


def capture_rng() -> dict[str, Any]:
    """torch CPU/CUDA RNG states as tensors (weights_only-safe), for trainers that need them."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def epoch_indices(n: int, batch_size: int, step: int, seed: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """The dataset indices of `step`'s batch for this rank: a seeded permutation per epoch.

    Batches never straddle epochs (the tail of a permutation is dropped), so the batch of any
    step is known without replaying the ones before it.
    """
    per_epoch = max(1, n // (batch_size * world))
    epoch, i = divmod(step, per_epoch)
    gen = torch.Generator("cpu")
    gen.manual_seed(seed * 7_777_777 + epoch)
    perm = torch.randperm(n, generator=gen)
    start = (i * world + rank) * batch_size
    return perm[start:start + batch_size]

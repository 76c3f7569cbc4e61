"""Densification strategies: how the set of Gaussians grows, shrinks and moves during training.

- `base.py`: the `Strategy` protocol a training loop calls (initialize_state, check_sanity,
  step_pre_backward, step_post_backward, regularization, scaled_to) and the schedule helpers;
- `ops.py`: the operations on parameters + optimiser state + statistics (duplicate, split,
  remove, reset_opa, relocate, sample_add, inject_noise_to_position), named after gsplat's;
- `relocation.py`: eq. 9 of 3DGS-MCMC (`compute_relocation`, the torch reference of gsplat's kernel);
- `default.py`: `DefaultStrategy`, the adaptive density control of Kerbl et al. 2023;
- `mcmc.py`: `MCMCStrategy`, 3DGS as MCMC (Kheradmand et al. 2024).
"""
from __future__ import annotations

from typing import Any

from .base import Optimizers, Params, Strategy, check_sanity
from .default import DefaultStrategy
from .mcmc import MCMCStrategy
from .ops import (duplicate, inject_noise_to_position, multinomial_sample, relocate, remove, reset_opa, sample_add,
                  split, update_param_with_optimizer)
from .relocation import binomial_table, compute_relocation

__all__ = ["Strategy", "Params", "Optimizers", "check_sanity", "DefaultStrategy", "MCMCStrategy", "STRATEGIES",
           "make_strategy", "duplicate", "split", "remove", "reset_opa", "relocate", "sample_add",
           "inject_noise_to_position", "multinomial_sample", "update_param_with_optimizer", "compute_relocation",
           "binomial_table"]

STRATEGIES: dict[str, type] = {"default": DefaultStrategy, "mcmc": MCMCStrategy}
"""The strategies by the name `--strategy` takes."""


def make_strategy(name: str, steps: int, **overrides: Any) -> Strategy:
    """The named strategy (fields from `overrides`) with its schedule scaled to a run of `steps`."""
    return STRATEGIES[name](**overrides).scaled_to(steps)

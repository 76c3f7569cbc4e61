"""The interface between a training loop and a densification strategy, and what strategies share.

A strategy decides how the set of Gaussians grows, shrinks and moves while it is optimised. The
loop owns the parameters (a ParameterDict under SPLAT_KEYS, or a plain dict) and one optimiser per
parameter; the strategy owns a small `state` dict, and its hooks change all three together:

    strategy.check_sanity(params, optimizers)                   # once, before the first step
    state = strategy.initialize_state(scene_scale)              # once
    for step in range(steps):
        render, alphas, info = rasterization(...)                 # info: means2d, radii, width, ...
        strategy.step_pre_backward(params, optimizers, state, step, info)
        loss = image_loss + strategy.regularization(params)
        loss.backward()
        for opt in optimizers.values(): opt.step(); opt.zero_grad()
        events = strategy.step_post_backward(params, optimizers, state, step, info, lr=means_lr)

This is the calling convention of gsplat's `Strategy` (and of its simple_trainer, which also runs
the post-backward hook after the optimiser step), plus `regularization` (the loss terms a strategy
asks for, which gsplat's trainer writes inline) and `scaled_to` (schedules for shorter runs).
"""
from __future__ import annotations

from typing import Any, Protocol, Union, runtime_checkable

import torch
from torch import Tensor, nn

from ..config import REFERENCE_STEPS

__all__ = ["Strategy", "Params", "Optimizers", "check_sanity", "scaled_step", "short_run_refine"]

Params = Union[nn.ParameterDict, dict[str, nn.Parameter]]
"""Per-Gaussian parameters by name; every tensor has the Gaussians along its first axis."""
Optimizers = dict[str, torch.optim.Optimizer]
"""One optimiser per trainable parameter, with that parameter as its only param group."""


@runtime_checkable
class Strategy(Protocol):
    """What a training loop may call on a densification strategy (see the module docstring).

    What the hooks mutate:
    - `params`: entries are replaced by new `nn.Parameter`s of another length (clone, split,
      prune, add) or changed in place (opacity reset, relocation, position noise); hold on to
      the dict, never to its tensors, across a hook;
    - the optimisers: each parameter's param group is pointed at its replacement and the
      per-Gaussian state tensors (Adam's exp_avg, exp_avg_sq) are sliced, extended with zeros or
      zeroed so that row i still belongs to Gaussian i; scalar state (`step`) is kept;
    - `state`: the strategy's own statistics, kept aligned with the Gaussians the same way.
    """

    def scaled_to(self, steps: int) -> "Strategy":
        """The same strategy with its step schedule (given for a 30k-step run) fitted to `steps`."""
        ...

    def initialize_state(self, scene_scale: float = 1.0) -> dict[str, Any]:
        """A fresh running state; the loop passes it to every hook and saves it in checkpoints."""
        ...

    def check_sanity(self, params: Params, optimizers: Optimizers) -> None:
        """Raise ValueError when `params` and `optimizers` do not follow the convention above."""
        ...

    def step_pre_backward(self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int,
                          info: dict[str, Any]) -> None:
        """Called after rendering, before `loss.backward()` (e.g. to keep the screen-space gradient)."""
        ...

    def step_post_backward(self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int,
                           info: dict[str, Any], lr: float | None = None) -> dict[str, int]:
        """Called after the optimiser step: refine on schedule. `lr` is the current position learning
        rate. Returns counts of what changed this step (e.g. {"cloned": 3, "pruned": 1})."""
        ...

    def regularization(self, params: Params) -> Tensor | float:
        """Extra loss terms this strategy needs (0.0 when none)."""
        ...


def check_sanity(params: Params, optimizers: Optimizers,
                 required: tuple[str, ...] = ("means", "scales", "quats", "opacities")) -> None:
    """The parameter/optimiser convention every strategy relies on, or a ValueError saying what breaks it."""
    trainable = {name for name, p in params.items() if p.requires_grad}
    if trainable != set(optimizers):
        raise ValueError(f"every trainable parameter needs its own optimiser and nothing else: parameters "
                         f"{sorted(trainable)}, optimisers {sorted(optimizers)}")
    for name, opt in optimizers.items():
        if len(opt.param_groups) != 1 or len(opt.param_groups[0]["params"]) != 1 \
                or opt.param_groups[0]["params"][0] is not params[name]:
            raise ValueError(f"the optimiser of '{name}' must hold exactly that parameter in one param group")
    missing = [k for k in required if k not in params]
    if missing:
        raise ValueError(f"a densification strategy needs the parameters {list(required)}; missing {missing}")


def scaled_step(value: int, factor: float, minimum: int = 1) -> int:
    """A step count of the 30k-step recipe scaled by `factor`, at least `minimum`."""
    return max(minimum, round(value * factor))


def short_run_refine(every: int, start: int, steps: int) -> tuple[int, int]:
    """Refinement interval and first step for a run of `steps`. Gradient statistics need a few
    dozen views to mean anything and the first steps move every Gaussian a lot, so the interval
    keeps a floor of 25 and the start one of 4 intervals, but the start stays in the first fifth
    of the run so very short runs still refine."""
    f = steps / REFERENCE_STEPS
    every = scaled_step(every, f, minimum=min(every, 25))
    start = min(scaled_step(start, f, minimum=min(start, 4 * every)), max(1, steps // 5))
    return every, start

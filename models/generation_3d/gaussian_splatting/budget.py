"""CPU-aware schedules: fit the number of steps and the Gaussian cap of a run to a time budget.

The paper's recipe (30k steps, growth without a cap from 100k random points) takes days on a
CPU. On CPU, `plan_for_budget` measures how long a training step takes on this machine, with
this scene's images, at the size the run will grow to, and picks the steps (and, when even the
fewest useful steps would not fit, a smaller cap) that fill the budget. Every step-counted
schedule (densification, opacity resets, SH degree, the position learning-rate decay) is then
scaled to those steps by the usual `scaled_to(steps)`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from utils.data.nerf_synthetic import PosedImages

from .config import GaussianSplattingConfig
from .model import GaussianSplatting

__all__ = ["BudgetPlan", "plan_for_budget", "default_cap", "time_steps", "DEFAULT_BUDGET_MIN", "MIN_STEPS",
           "MAX_STEPS"]

DEFAULT_BUDGET_MIN = 3.0
"""Minutes of training a bare `--data` run takes on CPU (evaluation and exports come after)."""
MIN_STEPS = 2000
"""Fewer steps than this leave densification too little room: the cap shrinks instead."""
MAX_STEPS = 30_000
"""The paper's length; a budget never buys more."""
INIT_FRACTION = 3
"""Random initial Gaussians = cap / this (the run grows to the cap by densification)."""


@dataclass(frozen=True)
class BudgetPlan:
    """What `plan_for_budget` chose, and the measurement it is based on."""

    steps: int
    """Training steps that fit the budget."""
    cap: int
    """Most Gaussians (the strategy's `max_gaussians` or `cap_max`)."""
    init_points: int
    """Random initial Gaussians (when the scene has no point cloud)."""
    seconds_per_step: float
    """Measured seconds of one step at the cap (the slowest the run gets)."""
    seconds_per_step_init: float
    """Measured seconds of one step at the initial size."""
    budget_s: float
    """The budget, seconds of training."""

    @property
    def expected_s(self) -> float:
        """Expected training seconds: the size grows to the cap over the first half (densification
        stops half way), so the mean step costs about 1/4 of the initial and 3/4 of the final one."""
        return self.steps * (0.25 * self.seconds_per_step_init + 0.75 * self.seconds_per_step)


def default_cap(width: int, height: int) -> int:
    """A cap that suits the image size: 1.5 Gaussians per pixel of one view, 5k..200k."""
    return int(min(200_000, max(5_000, round(1.5 * width * height, -3))))


def time_steps(model: GaussianSplatting, data: PosedImages, n: int = 6, warmup: int = 2,
               background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> float:
    """Median seconds of a full training step (render, 3DGS loss, backward, Adam) of `model` on `data`.

    The model's parameters are copied, so the caller's model is left untouched."""
    from .training import gs_loss, make_adam

    params = {k: torch.nn.Parameter(v.detach().clone()) for k, v in model.splats.items()}
    probe = GaussianSplatting(model.config)
    probe.splats = torch.nn.ParameterDict(params)
    opts = [make_adam(p, 1e-4) for p in params.values()]
    bg = torch.tensor(background)
    times = []
    for i in range(warmup + n):
        j = (i * 7) % len(data)
        t0 = time.perf_counter()
        render, _, _ = probe.render(data.cameras[j:j + 1], background=bg)
        loss, _ = gs_loss(render, data.images[j:j + 1], 0.2)
        loss.backward()
        for o in opts:
            o.step()
            o.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def _probe_model(config: GaussianSplattingConfig, n: int, seed: int) -> GaussianSplatting:
    """n random Gaussians in the initial cube, each about as large as the spacing of n points (the
    size a grown model's Gaussians have); no kNN search, which would cost more than the timing."""
    from utils.rendering.sh import num_sh_bases

    g = torch.Generator().manual_seed(seed)
    side = 2 * config.init_extent
    spacing = side / max(n, 1) ** (1 / 3)
    model = GaussianSplatting(config, 0)
    quats = torch.randn(n, 4, generator=g)
    model.load_splats({
        "means": (torch.rand(n, 3, generator=g) - 0.5) * side,
        "scales": torch.full((n, 3), math.log(0.5 * spacing)),
        "quats": quats / quats.norm(dim=-1, keepdim=True),
        "opacities": torch.logit(torch.full((n,), config.init_opacity)),
        "sh0": torch.rand(n, 1, 3, generator=g) - 0.5,
        "shN": torch.zeros(n, num_sh_bases(config.sh_degree) - 1, 3),
    })
    return model


def plan_for_budget(config: GaussianSplattingConfig, data: PosedImages, budget_min: float,
                    cap: int | None = None, steps: int | None = None, seed: int = 0) -> BudgetPlan:
    """Steps and cap that fit `budget_min` minutes of training on this machine.

    `cap` or `steps` given by the user are kept; the other is chosen. With neither, the cap starts
    at `default_cap` and halves (down to 2,000) while fewer than MIN_STEPS would fit."""
    budget_s = budget_min * 60.0
    if budget_s <= 0:
        raise ValueError("the time budget must be positive")
    size = (data.cameras.width, data.cameras.height)
    chosen_cap = cap or default_cap(*size)
    while True:
        init = max(1, min(config.init_num_points, chosen_cap // INIT_FRACTION))
        t_cap = time_steps(_probe_model(config, chosen_cap, seed), data)
        t_init = time_steps(_probe_model(config, init, seed), data) if init < chosen_cap else t_cap
        per_step = 0.25 * t_init + 0.75 * t_cap
        n_steps = steps or int(min(MAX_STEPS, max(1, math.floor(budget_s / per_step))))
        if steps is not None or cap is not None or n_steps >= MIN_STEPS or chosen_cap <= 2_000:
            return BudgetPlan(steps=n_steps, cap=chosen_cap, init_points=init, seconds_per_step=t_cap,
                              seconds_per_step_init=t_init, budget_s=budget_s)
        chosen_cap = max(2_000, chosen_cap // 2)

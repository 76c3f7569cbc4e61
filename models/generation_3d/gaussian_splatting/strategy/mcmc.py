"""3D Gaussian splatting as Markov chain Monte Carlo (Kheradmand et al. 2024)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from ..config import REFERENCE_STEPS
from .base import Optimizers, Params, check_sanity, scaled_step, short_run_refine
from .ops import inject_noise_to_position, relocate, sample_add
from .relocation import binomial_table

__all__ = ["MCMCStrategy"]


@dataclass(frozen=True)
class MCMCStrategy:
    """Move dead Gaussians onto live ones (relocation that keeps the rendered density), grow by 5%
    per refinement up to a cap, perturb positions with noise gated by opacity, and regularise
    opacity and scale. Step counts are for a 30k-step run (`scaled_to` fits them to shorter ones).

    Same decisions as `gsplat.strategy.MCMCStrategy` for the same fields (ours are named
    refine_start / refine_stop for gsplat's refine_start_iter / refine_stop_iter); the
    regularisers, which gsplat's simple_trainer adds to its loss, are `regularization()` here.

    State: `binoms`, the binomial table of eq. 9 (no per-Gaussian statistics).
    """

    cap_max: int = 1_000_000
    """Most Gaussians the scene may hold; it grows by 5% per refinement until then."""
    noise_lr: float = 5e5
    """Position noise = noise_lr x the current position lr x covariance-shaped Gaussian noise."""
    refine_start: int = 500
    """Relocate and grow only after this step."""
    refine_stop: int = 25_000
    """Relocate and grow only before this step (the noise goes on to the end)."""
    refine_every: int = 100
    """Relocate and grow every this many steps."""
    min_opacity: float = 0.005
    """Gaussians at or below this opacity are dead and get relocated; the floor of shared opacities."""
    opacity_reg: float = 0.01
    """Weight of the mean-opacity regulariser (pushes unneeded Gaussians towards death)."""
    scale_reg: float = 0.01
    """Weight of the mean-scale regulariser."""
    n_max: int = 51
    """Largest number of copies of one Gaussian that eq. 9 accounts for in one relocation."""

    def scaled_to(self, steps: int) -> "MCMCStrategy":
        f = steps / REFERENCE_STEPS
        every, start = short_run_refine(self.refine_every, self.refine_start, steps)
        return replace(self, refine_start=start, refine_stop=max(scaled_step(self.refine_stop, f), start + 2 * every),
                       refine_every=every)

    def initialize_state(self, scene_scale: float = 1.0) -> dict[str, Any]:
        return {"binoms": binomial_table(self.n_max)}

    def check_sanity(self, params: Params, optimizers: Optimizers) -> None:
        check_sanity(params, optimizers)

    def regularization(self, params: Params) -> Tensor:
        return (self.opacity_reg * torch.sigmoid(params["opacities"]).mean()
                + self.scale_reg * torch.exp(params["scales"]).mean())

    def step_pre_backward(self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int,
                          info: dict[str, Any]) -> None:
        """Nothing to keep: MCMC reads no gradient statistics."""

    @torch.no_grad()
    def step_post_backward(self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int,
                           info: dict[str, Any], lr: float | None = None) -> dict[str, int]:
        """Relocate and grow on schedule, then add position noise scaled by `lr` (skipped when None)."""
        state["binoms"] = state["binoms"].to(params["means"].device)
        out: dict[str, int] = {}
        if self.refine_start < step < self.refine_stop and step % self.refine_every == 0:
            out["relocated"] = self._relocate(params, optimizers, state["binoms"])
            out["added"] = self._add(params, optimizers, state["binoms"])
        if lr is not None:
            inject_noise_to_position(params, optimizers, {}, lr * self.noise_lr)
        return out

    def _relocate(self, params: Params, optimizers: Optimizers, binoms: Tensor) -> int:
        dead = torch.sigmoid(params["opacities"].flatten()) <= self.min_opacity
        n_dead = int(dead.sum())
        if n_dead == 0 or n_dead == len(dead):  # nothing dead, or nothing alive to move onto
            return 0
        relocate(params, optimizers, {}, dead, binoms, self.min_opacity)
        return n_dead

    def _add(self, params: Params, optimizers: Optimizers, binoms: Tensor) -> int:
        n_now = len(params["means"])
        n_new = max(0, min(self.cap_max, int(1.05 * n_now)) - n_now)
        if n_new:
            sample_add(params, optimizers, {}, n_new, binoms, self.min_opacity)
        return n_new

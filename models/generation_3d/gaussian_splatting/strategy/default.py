"""The original adaptive density control of 3D Gaussian splatting (Kerbl et al. 2023, sec. 5.2)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from ..config import REFERENCE_STEPS
from .base import Optimizers, Params, check_sanity, scaled_step, short_run_refine
from .ops import duplicate, remove, reset_opa, split

__all__ = ["DefaultStrategy"]


@dataclass(frozen=True)
class DefaultStrategy:
    """Clone small and split large Gaussians whose screen-space position gradient is high, prune
    transparent (and, after the first opacity reset, oversized) ones, and reset opacities
    periodically. Step counts are for a 30k-step run (`scaled_to` fits them to shorter ones).

    Same decisions as `gsplat.strategy.DefaultStrategy` for the same fields (ours are named
    refine_start / refine_stop for gsplat's refine_start_iter / refine_stop_iter), with two
    differences: `max_gaussians` (a memory guard gsplat lacks), and the opacity reset, which runs
    every `reset_every` steps as in the paper (gsplat 1.5.3 writes its condition as
    `step % reset_every == 0 & step > 0`, which Python reads as a chain that is always false).

    State: `grad2d` and `count` (sum and number of screen-space gradient norms per Gaussian since
    the last refinement, created at the first step), `radii` when screen-size rules are on, and
    `scene_scale`.
    """

    prune_opa: float = 0.005
    """Remove Gaussians with opacity below this."""
    grow_grad2d: float = 2e-4
    """Densify Gaussians whose mean screen-space gradient (in NDC units, [-1, 1] across the image) exceeds this."""
    grow_scale3d: float = 0.01
    """Clone Gaussians at most this large (largest axis, as a fraction of the scene scale); split larger ones."""
    grow_scale2d: float = 0.05
    """While `refine_scale2d_stop_iter` lasts, also split Gaussians whose screen radius exceeds this
    fraction of the image side."""
    prune_scale3d: float = 0.1
    """After the first opacity reset, remove Gaussians larger than this fraction of the scene scale."""
    prune_scale2d: float = 0.15
    """While `refine_scale2d_stop_iter` lasts (and after the first reset), remove Gaussians whose
    screen radius exceeds this fraction of the image side."""
    refine_scale2d_stop_iter: int = 0
    """Apply the screen-size rules before this step; 0 turns them off, as in the original code, where a
    bug keeps them from ever firing (graphdeco-inria/gaussian-splatting issue 123)."""
    refine_start: int = 500
    """Refine only after this step."""
    refine_stop: int = 15_000
    """Nothing happens from this step on: no refinement, no opacity reset, no statistics."""
    refine_every: int = 100
    """Refine every this many steps."""
    reset_every: int = 3000
    """Reset opacities every this many steps."""
    reset_value: float = 0.01
    """Opacity ceiling applied at a reset (twice `prune_opa`, as in the paper)."""
    pause_refine_after_reset: int = 0
    """Skip refinements for this many steps after each reset (gsplat suggests the number of training views)."""
    revised_opacity: bool = False
    """Split opacity o into 1 - sqrt(1 - o) for both children (Bulò et al. 2024) instead of copying it."""
    max_gaussians: int = 10_000_000
    """No growth beyond this many Gaussians; when a refinement would pass it, the highest gradients win."""

    def scaled_to(self, steps: int) -> "DefaultStrategy":
        f = steps / REFERENCE_STEPS
        every, start = short_run_refine(self.refine_every, self.refine_start, steps)
        return replace(self, refine_start=start, refine_stop=max(scaled_step(self.refine_stop, f), start + every),
                       refine_every=every,
                       reset_every=scaled_step(self.reset_every, f, minimum=min(self.reset_every, 4 * every)),
                       refine_scale2d_stop_iter=(scaled_step(self.refine_scale2d_stop_iter, f)
                                                 if self.refine_scale2d_stop_iter > 0 else 0))

    def initialize_state(self, scene_scale: float = 1.0) -> dict[str, Any]:
        state: dict[str, Any] = {"grad2d": None, "count": None, "scene_scale": float(scene_scale)}
        if self.refine_scale2d_stop_iter > 0:
            state["radii"] = None
        return state

    def check_sanity(self, params: Params, optimizers: Optimizers) -> None:
        check_sanity(params, optimizers)

    def regularization(self, params: Params) -> Tensor | float:
        return 0.0

    def step_pre_backward(self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int,
                          info: dict[str, Any]) -> None:
        """Keep the gradient of the projected centres, the statistic densification reads."""
        if info["means2d"].requires_grad:
            info["means2d"].retain_grad()

    @torch.no_grad()
    def step_post_backward(self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int,
                           info: dict[str, Any], lr: float | None = None) -> dict[str, int]:
        if step >= self.refine_stop:
            return {}
        self._update_state(params, state, info)
        out: dict[str, int] = {}
        if step > self.refine_start and step % self.refine_every == 0 \
                and step % self.reset_every >= self.pause_refine_after_reset and state["grad2d"] is not None:
            out.update(self._grow(params, optimizers, state, step))
            out["pruned"] = self._prune(params, optimizers, state, step)
            for key in ("grad2d", "count", "radii"):
                if torch.is_tensor(state.get(key)):
                    state[key].zero_()
        if step > 0 and step % self.reset_every == 0:
            reset_opa(params, optimizers, state, self.reset_value)
            out["reset"] = 1
        return out

    def _update_state(self, params: Params, state: dict[str, Any], info: dict[str, Any]) -> None:
        grad = info["means2d"].grad
        if grad is None:  # nothing was visible, so nothing to accumulate
            return
        grad = grad.clone()
        # NDC units: the paper's threshold assumes them (and a sum over the cameras of the batch)
        grad[..., 0] *= info["width"] / 2.0 * info["n_cameras"]
        grad[..., 1] *= info["height"] / 2.0 * info["n_cameras"]
        n = len(params["means"])
        for key in ("grad2d", "count") + (("radii",) if "radii" in state else ()):
            if state[key] is None:
                state[key] = torch.zeros(n, device=grad.device)
        visible = (info["radii"] > 0).all(-1)  # (C, N)
        ids = visible.nonzero()[:, 1]  # camera-major: the order gsplat accumulates in
        state["grad2d"].index_add_(0, ids, grad[visible].norm(dim=-1))
        state["count"].index_add_(0, ids, torch.ones_like(ids, dtype=torch.float32))
        if "radii" in state:
            # largest screen radius over the batch, as a fraction of the image side
            r = (info["radii"].max(-1).values * visible).amax(0).float() / float(max(info["width"], info["height"]))
            state["radii"] = torch.maximum(state["radii"], r)

    def _grow(self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int) -> dict[str, int]:
        avg = state["grad2d"] / state["count"].clamp(min=1)
        high = avg > self.grow_grad2d
        small = torch.exp(params["scales"]).max(-1).values <= self.grow_scale3d * state["scene_scale"]
        clone_mask = high & small
        split_mask = high & ~small
        if step < self.refine_scale2d_stop_iter:
            split_mask |= state["radii"] > self.grow_scale2d
        room = self.max_gaussians - len(params["means"])
        if room <= 0:
            return {"cloned": 0, "split": 0}
        if int(clone_mask.sum()) + int(split_mask.sum()) > room:
            # keep the strongest gradients when the cap would be passed
            order = torch.argsort(torch.where(high, avg, torch.zeros_like(avg)), descending=True)[room:]
            clone_mask[order] = False
            split_mask[order] = False
        n_clone, n_split = int(clone_mask.sum()), int(split_mask.sum())
        if n_clone:
            duplicate(params, optimizers, state, clone_mask)
        if n_split:
            # the clones sit at the end and are not split this round
            split_mask = torch.cat([split_mask, split_mask.new_zeros(n_clone)])
            split(params, optimizers, state, split_mask, revised_opacity=self.revised_opacity)
        return {"cloned": n_clone, "split": n_split}

    def _prune(self, params: Params, optimizers: Optimizers, state: dict[str, Any], step: int) -> int:
        mask = torch.sigmoid(params["opacities"].flatten()) < self.prune_opa
        if step > self.reset_every:
            too_big = torch.exp(params["scales"]).max(-1).values > self.prune_scale3d * state["scene_scale"]
            if step < self.refine_scale2d_stop_iter:
                too_big |= state["radii"] > self.prune_scale2d
            mask |= too_big
        n = int(mask.sum())
        if n:
            remove(params, optimizers, state, mask)
        return n

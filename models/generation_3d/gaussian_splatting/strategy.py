"""Densification strategies: how the set of Gaussians grows, shrinks and moves during training.

Each strategy is a small dataclass with `initial_state()`, `step_post_backward(...)` (called after
`loss.backward()` and before the optimiser step) and `regularization(model)` (extra loss terms).
Parameters live in a ParameterDict with one Adam optimiser per parameter; the helpers below
change both together so the Adam moments stay aligned with the Gaussians they belong to.

- `DefaultStrategy`: the original adaptive density control (Kerbl et al. 2023): clone small and
  split large Gaussians whose screen-space position gradient is high, prune transparent and
  oversized ones, reset opacities periodically.
- `MCMCStrategy`: 3DGS as Markov chain Monte Carlo (Kheradmand et al. 2024): move dead Gaussians
  onto live ones (relocation preserving the rendered density), grow by 5% per refinement up to a
  cap, inject position noise gated by opacity, and regularise opacity and scale.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
from torch import Tensor, nn

from utils.rendering.splat_projection import quat_scale_to_covar_preci, quat_to_rotmat

from .config import REFERENCE_STEPS

__all__ = ["DefaultStrategy", "MCMCStrategy", "STRATEGIES", "make_strategy"]

Params = nn.ParameterDict
Optimizers = dict[str, torch.optim.Optimizer]


# -- operations on parameters and their optimiser state ------------------------------------------
@torch.no_grad()
def _update_param_with_optimizer(param_fn: Callable[[str, Tensor], Tensor],
                                 state_fn: Callable[[str, Tensor], Tensor], params: Params,
                                 optimizers: Optimizers) -> None:
    """Replace every parameter by `param_fn(name, p)` and every per-Gaussian Adam tensor by
    `state_fn(key, v)`, keeping optimiser and parameters pointing at the same tensors."""
    for name in list(params.keys()):
        old = params[name]
        new = nn.Parameter(param_fn(name, old.data), requires_grad=old.requires_grad)
        opt = optimizers[name]
        state = opt.state.pop(old, None)
        for group in opt.param_groups:
            group["params"] = [new if p is old else p for p in group["params"]]
        if state is not None:
            opt.state[new] = {k: (state_fn(k, v) if torch.is_tensor(v) and v.dim() > 0 else v)
                              for k, v in state.items()}
        params[name] = new


def duplicate(params: Params, optimizers: Optimizers, state: dict, mask: Tensor) -> None:
    """Append copies of the Gaussians in `mask` (fresh Adam moments)."""
    idx = mask.nonzero().squeeze(-1)
    _update_param_with_optimizer(lambda n, p: torch.cat([p, p[idx]]),
                                 lambda k, v: torch.cat([v, torch.zeros_like(v[idx])]), params, optimizers)
    _extend_state(state, len(idx))


def split(params: Params, optimizers: Optimizers, state: dict, mask: Tensor, factor: float = 1.6) -> None:
    """Replace each Gaussian in `mask` by two, sampled inside it, with scales / `factor`."""
    idx = mask.nonzero().squeeze(-1)
    rest = (~mask).nonzero().squeeze(-1)
    scales = torch.exp(params["scales"][idx])
    R = quat_to_rotmat(params["quats"][idx])
    offsets = (R @ (torch.randn(2, len(idx), 3, device=scales.device) * scales)[..., None]).squeeze(-1)

    def param_fn(name: str, p: Tensor) -> Tensor:
        if name == "means":
            new = (p[idx][None] + offsets).reshape(-1, 3)
        elif name == "scales":
            new = (p[idx] - math.log(factor)).repeat(2, 1)
        else:
            new = p[idx].repeat((2,) + (1,) * (p.dim() - 1))
        return torch.cat([p[rest], new])

    _update_param_with_optimizer(param_fn, lambda k, v: torch.cat([v[rest], torch.zeros_like(v[idx]).repeat(
        (2,) + (1,) * (v.dim() - 1))]), params, optimizers)
    _select_state(state, rest)
    _extend_state(state, 2 * len(idx))


def remove(params: Params, optimizers: Optimizers, state: dict, mask: Tensor) -> None:
    """Delete the Gaussians in `mask`."""
    keep = (~mask).nonzero().squeeze(-1)
    _update_param_with_optimizer(lambda n, p: p[keep], lambda k, v: v[keep], params, optimizers)
    _select_state(state, keep)


def reset_opacity(params: Params, optimizers: Optimizers, value: float) -> None:
    """Clamp every opacity to at most `value` and forget the opacity moments."""
    params["opacities"].data.clamp_(max=torch.logit(torch.tensor(value)).item())
    st = optimizers["opacities"].state.get(params["opacities"])
    for v in (st or {}).values():
        if torch.is_tensor(v) and v.dim() > 0:
            v.zero_()


def _select_state(state: dict, idx: Tensor) -> None:
    for k, v in state.items():
        if torch.is_tensor(v) and v.dim() > 0 and k not in _GLOBAL_STATE:
            state[k] = v[idx]


def _extend_state(state: dict, n: int) -> None:
    """Room for `n` new Gaussians in the per-Gaussian statistics (zeros)."""
    for k, v in state.items():
        if torch.is_tensor(v) and v.dim() > 0 and k not in _GLOBAL_STATE:
            state[k] = torch.cat([v, v.new_zeros((n,) + v.shape[1:])])


_GLOBAL_STATE = {"binoms"}


def _scaled_step(value: int, factor: float, minimum: int = 1) -> int:
    return max(minimum, round(value * factor))


def _short_run_refine(every: int, start: int, steps: int) -> tuple[int, int]:
    """Refinement interval and first step for a run of `steps`. Gradient statistics need a few
    dozen views to mean anything and the first steps move every Gaussian a lot, so the interval
    keeps a floor of 25 and the start one of 4 intervals, but the start stays in the first fifth
    of the run so very short runs still refine."""
    f = steps / REFERENCE_STEPS
    every = _scaled_step(every, f, minimum=min(every, 25))
    start = min(_scaled_step(start, f, minimum=min(start, 4 * every)), max(1, steps // 5))
    return every, start


# -- the original adaptive density control -------------------------------------------------------
@dataclass(frozen=True)
class DefaultStrategy:
    """Clone / split / prune / opacity reset (Kerbl et al. 2023). Steps are for a 30k-step run."""

    grow_grad2d: float = 2e-4
    """Densify Gaussians whose mean screen-space gradient (NDC units) exceeds this."""
    grow_scale3d: float = 0.01
    """Clone (if smaller) or split (if larger) at this fraction of the scene extent."""
    prune_opa: float = 0.005
    """Remove Gaussians with opacity below this."""
    prune_scale3d: float = 0.1
    """After the first opacity reset, remove Gaussians larger than this fraction of the extent."""
    prune_scale2d: float = 0.15
    """... or whose screen radius exceeds this fraction of the image side."""
    refine_start: int = 500
    """First densification step."""
    refine_stop: int = 15_000
    """No densification after this step (pruning by opacity included)."""
    refine_every: int = 100
    """Densify every this many steps."""
    reset_every: int = 3000
    """Reset opacities to `reset_value` every this many steps."""
    reset_value: float = 0.01
    """Opacity ceiling applied at a reset."""
    max_gaussians: int = 10_000_000
    """No growth beyond this many Gaussians (a memory guard; the paper has none)."""

    def scaled_to(self, steps: int) -> "DefaultStrategy":
        f = steps / REFERENCE_STEPS
        every, start = _short_run_refine(self.refine_every, self.refine_start, steps)
        return replace(self, refine_start=start, refine_stop=max(_scaled_step(self.refine_stop, f), start + every),
                       refine_every=every,
                       reset_every=_scaled_step(self.reset_every, f, minimum=min(self.reset_every, 4 * every)))

    def initial_state(self, n: int, device: torch.device | str = "cpu") -> dict[str, Any]:
        return {"grad2d": torch.zeros(n, device=device), "count": torch.zeros(n, device=device),
                "radii": torch.zeros(n, device=device)}

    def regularization(self, params: Params) -> Tensor | float:
        return 0.0

    @torch.no_grad()
    def step_post_backward(self, params: Params, optimizers: Optimizers, state: dict, step: int, info: dict,
                           scene_scale: float, lr: float | None = None) -> dict[str, int]:
        """Accumulate statistics; densify/prune/reset on schedule. Returns counts of what changed."""
        if step >= self.refine_stop:
            return {}
        self._update_state(state, info)
        out: dict[str, int] = {}
        if step > self.refine_start and step % self.refine_every == 0:
            out.update(self._grow(params, optimizers, state, scene_scale))
            out.update(self._prune(params, optimizers, state, step, scene_scale))
            for k in state:
                state[k] = torch.zeros_like(state[k][: len(params["means"])]) if k != "binoms" else state[k]
        if step % self.reset_every == 0 and step > 0:
            reset_opacity(params, optimizers, self.reset_value)
            out["reset"] = 1
        return out

    def _update_state(self, state: dict, info: dict) -> None:
        grad = info["means2d"].grad
        if grad is None:
            return
        grad = grad.clone()
        # express the gradient in NDC units, as the paper's threshold assumes
        grad[..., 0] *= info["width"] / 2.0 * info["n_cameras"]
        grad[..., 1] *= info["height"] / 2.0 * info["n_cameras"]
        visible = (info["radii"] > 0).all(-1)  # (C, N)
        norms = grad.norm(dim=-1)
        state["grad2d"] += (norms * visible).sum(0)
        state["count"] += visible.sum(0).to(state["count"].dtype)
        r = info["radii"].max(-1).values.float().amax(0) / float(max(info["width"], info["height"]))
        state["radii"] = torch.maximum(state["radii"], r)

    def _grow(self, params: Params, optimizers: Optimizers, state: dict, scene_scale: float) -> dict[str, int]:
        avg = state["grad2d"] / state["count"].clamp(min=1)
        high = avg > self.grow_grad2d
        small = torch.exp(params["scales"]).max(-1).values <= self.grow_scale3d * scene_scale
        room = self.max_gaussians - len(params["means"])
        clone_mask = high & small
        split_mask = high & ~small
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
            split_mask = torch.cat([split_mask, torch.zeros(n_clone, dtype=torch.bool, device=split_mask.device)])
            split(params, optimizers, state, split_mask)
        return {"cloned": n_clone, "split": n_split}

    def _prune(self, params: Params, optimizers: Optimizers, state: dict, step: int,
               scene_scale: float) -> dict[str, int]:
        mask = torch.sigmoid(params["opacities"]) < self.prune_opa
        if step > self.reset_every:
            mask |= torch.exp(params["scales"]).max(-1).values > self.prune_scale3d * scene_scale
            mask |= state["radii"] > self.prune_scale2d
        n = int(mask.sum())
        if n:
            remove(params, optimizers, state, mask)
        return {"pruned": n}


# -- MCMC ------------------------------------------------------------------------------------------
def _binomials(n_max: int) -> Tensor:
    return torch.tensor([[math.comb(n, k) for k in range(n_max)] for n in range(n_max)], dtype=torch.float32)


def compute_relocation(opacities: Tensor, scales: Tensor, ratios: Tensor, binoms: Tensor) -> tuple[Tensor, Tensor]:
    """Opacity and scale of each of `ratios` copies of a Gaussian so that together they render
    like the original (Kheradmand et al. 2024, eq. 9): o' = 1 - (1 - o)^(1/n) and
    s' = s * o / sum_{i=1}^{n} sum_{k=0}^{i-1} C(i-1, k) (-1)^k o'^(k+1) / sqrt(k+1)."""
    n_max = binoms.shape[0]
    n = ratios.clamp(1, n_max).to(opacities.dtype)
    new_op = 1.0 - torch.pow(1.0 - opacities, 1.0 / n)
    i = torch.arange(1, n_max + 1, device=opacities.device)
    k = torch.arange(n_max, device=opacities.device)
    coeff = binoms[i - 1]  # row i-1: C(i-1, k) for every k
    valid_ik = (k[None] <= (i - 1)[:, None]).to(opacities.dtype)
    term_ik = coeff * valid_ik * ((-1.0) ** k)[None] / torch.sqrt(k + 1.0)[None]  # (n_max, n_max)
    powers = new_op[:, None] ** (k + 1)[None]  # (G, n_max)
    per_i = powers @ term_ik.T  # (G, n_max): sum over k for every i
    use_i = (i[None] <= n[:, None]).to(opacities.dtype)
    denom = (per_i * use_i).sum(-1)
    new_scales = scales * (opacities / denom)[:, None]
    return new_op, new_scales


@dataclass(frozen=True)
class MCMCStrategy:
    """3DGS as MCMC (Kheradmand et al. 2024). Steps are for a 30k-step run."""

    cap_max: int = 1_000_000
    """Most Gaussians the scene may hold; it grows by 5% per refinement until then."""
    noise_lr: float = 5e5
    """Position noise = noise_lr x current position lr x covariance-shaped Gaussian noise."""
    refine_start: int = 500
    """First relocation / growth step."""
    refine_stop: int = 25_000
    """Last relocation / growth step."""
    refine_every: int = 100
    """Relocate and grow every this many steps."""
    min_opacity: float = 0.005
    """Gaussians below this opacity are dead and get relocated."""
    opacity_reg: float = 0.01
    """Weight of the mean-opacity regulariser (pushes unneeded Gaussians towards death)."""
    scale_reg: float = 0.01
    """Weight of the mean-scale regulariser."""
    n_max: int = 51
    """Largest number of copies of one Gaussian in one relocation."""

    def scaled_to(self, steps: int) -> "MCMCStrategy":
        f = steps / REFERENCE_STEPS
        every, start = _short_run_refine(self.refine_every, self.refine_start, steps)
        return replace(self, refine_start=start, refine_stop=max(_scaled_step(self.refine_stop, f), start + 2 * every),
                       refine_every=every)

    def initial_state(self, n: int, device: torch.device | str = "cpu") -> dict[str, Any]:
        return {"binoms": _binomials(self.n_max).to(device)}

    def regularization(self, params: Params) -> Tensor:
        return (self.opacity_reg * torch.sigmoid(params["opacities"]).mean()
                + self.scale_reg * torch.exp(params["scales"]).mean())

    @torch.no_grad()
    def step_post_backward(self, params: Params, optimizers: Optimizers, state: dict, step: int, info: dict,
                           scene_scale: float, lr: float | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        binoms = state["binoms"].to(params["means"].device)
        if self.refine_start < step < self.refine_stop and step % self.refine_every == 0:
            out["relocated"] = self._relocate(params, optimizers, binoms)
            out["added"] = self._add(params, optimizers, binoms)
        if lr is not None:
            self._inject_noise(params, lr * self.noise_lr)
        return out

    def _sample(self, params: Params, n: int, candidates: Tensor) -> Tensor:
        probs = torch.sigmoid(params["opacities"][candidates]).flatten()
        return candidates[torch.multinomial(probs, n, replacement=True)]

    def _copy_with_relocation(self, params: Params, sampled: Tensor, binoms: Tensor) -> tuple[Tensor, Tensor]:
        """New opacity and log scale of each sampled source, shared by it and all its new copies."""
        counts = torch.bincount(sampled, minlength=len(params["means"]))[sampled] + 1
        new_op, new_sc = compute_relocation(torch.sigmoid(params["opacities"][sampled]),
                                            torch.exp(params["scales"][sampled]), counts, binoms)
        new_op = new_op.clamp(max=1.0 - torch.finfo(new_op.dtype).eps, min=self.min_opacity)
        return torch.logit(new_op), torch.log(new_sc)

    def _relocate(self, params: Params, optimizers: Optimizers, binoms: Tensor) -> int:
        dead = torch.sigmoid(params["opacities"]) <= self.min_opacity
        n_dead = int(dead.sum())
        alive = (~dead).nonzero().squeeze(-1)
        if n_dead == 0 or len(alive) == 0:
            return 0
        dead_idx = dead.nonzero().squeeze(-1)
        src = self._sample(params, n_dead, alive)
        op, sc = self._copy_with_relocation(params, src, binoms)
        for name, p in params.items():
            if name == "opacities":
                p.data[src] = op
            elif name == "scales":
                p.data[src] = sc
            p.data[dead_idx] = p.data[src]
        self._zero_moments(params, optimizers, src)
        return n_dead

    def _add(self, params: Params, optimizers: Optimizers, binoms: Tensor) -> int:
        n_now = len(params["means"])
        n_new = max(0, min(self.cap_max, int(1.05 * n_now)) - n_now)
        if n_new == 0:
            return 0
        src = self._sample(params, n_new, torch.arange(n_now, device=params["means"].device))
        op, sc = self._copy_with_relocation(params, src, binoms)
        params["opacities"].data[src] = op
        params["scales"].data[src] = sc
        _update_param_with_optimizer(lambda n, p: torch.cat([p, p[src]]),
                                     lambda k, v: torch.cat([v, torch.zeros_like(v[src])]), params, optimizers)
        self._zero_moments(params, optimizers, src)
        return n_new

    @staticmethod
    def _zero_moments(params: Params, optimizers: Optimizers, idx: Tensor) -> None:
        for name, p in params.items():
            st = optimizers[name].state.get(p)
            if st:
                for k, v in st.items():
                    if torch.is_tensor(v) and v.dim() > 0:
                        v[idx] = 0

    def _inject_noise(self, params: Params, scale: float) -> None:
        opacities = torch.sigmoid(params["opacities"])
        covars, _ = quat_scale_to_covar_preci(params["quats"], torch.exp(params["scales"]))
        # only nearly transparent Gaussians move noticeably: a steep sigmoid of (1 - opacity)
        gate = torch.sigmoid(100.0 * ((1.0 - opacities) - 0.995))
        noise = torch.randn_like(params["means"]) * gate[:, None] * scale
        params["means"].data += (covars @ noise[..., None]).squeeze(-1)


STRATEGIES = {"default": DefaultStrategy, "mcmc": MCMCStrategy}


def make_strategy(name: str, steps: int, **overrides: Any):
    """The named strategy with its schedule scaled to a run of `steps`."""
    return STRATEGIES[name](**overrides).scaled_to(steps)

"""The operations strategies are built from, each changing parameters, optimiser state and running
statistics together so that row i of every tensor keeps describing Gaussian i.

Named after gsplat's `gsplat.strategy.ops` (duplicate, split, remove, reset_opa, relocate,
sample_add, inject_noise_to_position) and tested against them on the same inputs. Every
operation takes `state`, the strategy's per-Gaussian statistics: each tensor in it follows the
Gaussians (copied for clones and split children, sliced on removal, zero rows for new samples);
non-tensor entries are left alone. Randomness comes from torch's global generator, in the
order gsplat draws it, so a seeded run reproduces gsplat's choices.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.rendering.splat_projection import quat_scale_to_covar_preci, quat_to_rotmat

from .base import Optimizers, Params
from .relocation import compute_relocation

__all__ = ["update_param_with_optimizer", "multinomial_sample", "duplicate", "split", "remove", "reset_opa",
           "relocate", "sample_add", "inject_noise_to_position"]

TORCH_MULTINOMIAL_MAX = 2 ** 24
"""torch.multinomial refuses more categories than this; larger scenes sample with numpy."""


# -- optimiser-state surgery ----------------------------------------------------------------------
def _per_gaussian(value: object, n: int) -> bool:
    """Whether an optimiser state entry has one row per Gaussian (moments do; `step` does not)."""
    return torch.is_tensor(value) and value.dim() > 0 and value.shape[0] == n


@torch.no_grad()
def update_param_with_optimizer(param_fn: Callable[[str, Tensor], Tensor],
                                optimizer_fn: Callable[[str, Tensor], Tensor], params: Params,
                                optimizers: Optimizers, names: Iterable[str] | None = None) -> None:
    """Replace parameter `name` by a new Parameter holding `param_fn(name, old)` and each of its
    per-Gaussian optimiser tensors by `optimizer_fn(key, old_value)`, and point the optimiser at
    the new Parameter. Parameters without an optimiser must be frozen (requires_grad=False)."""
    for name in list(params.keys()) if names is None else list(names):
        old = params[name]
        new = nn.Parameter(param_fn(name, old.data), requires_grad=old.requires_grad)
        params[name] = new
        if name not in optimizers:
            if old.requires_grad:
                raise ValueError(f"parameter '{name}' is trainable but has no optimiser")
            continue
        opt = optimizers[name]
        for group in opt.param_groups:
            group["params"] = [new if p is old else p for p in group["params"]]
        moments = opt.state.pop(old, None)
        if moments is not None:
            opt.state[new] = {k: optimizer_fn(k, v) if _per_gaussian(v, len(old)) else v for k, v in moments.items()}


@torch.no_grad()
def _zero_optimizer_rows(params: Params, optimizers: Optimizers, idx: Tensor) -> None:
    """Forget the optimiser moments of the Gaussians `idx` (in place)."""
    for name, p in params.items():
        if name not in optimizers:
            continue
        for v in optimizers[name].state.get(p, {}).values():
            if _per_gaussian(v, len(p)):
                v[idx] = 0


def _zeros_like_rows(v: Tensor, n: int) -> Tensor:
    return v.new_zeros((n,) + tuple(v.shape[1:]))


def _repeat_rows(v: Tensor, times: int) -> Tensor:
    return v.repeat((times,) + (1,) * (v.dim() - 1))


# -- sampling ---------------------------------------------------------------------------------------
@torch.no_grad()
def multinomial_sample(weights: Tensor, n: int, replacement: bool = True) -> Tensor:
    """`n` indices drawn in proportion to `weights` (1-D); numpy above torch's category limit."""
    if weights.numel() <= TORCH_MULTINOMIAL_MAX:
        return torch.multinomial(weights, n, replacement=replacement)
    p = (weights / weights.sum()).double().cpu().numpy()
    idx = np.random.choice(weights.numel(), size=n, p=p / p.sum(), replace=replacement)
    return torch.from_numpy(idx).to(weights.device)


# -- adaptive density control (Kerbl et al. 2023) -----------------------------------------------
@torch.no_grad()
def duplicate(params: Params, optimizers: Optimizers, state: dict, mask: Tensor) -> None:
    """Append a copy of every Gaussian in `mask`; the copies start with zero optimiser moments and
    a copy of the originals' statistics."""
    sel = mask.nonzero().squeeze(-1)
    update_param_with_optimizer(lambda name, p: torch.cat([p, p[sel]]),
                                lambda key, v: torch.cat([v, _zeros_like_rows(v, len(sel))]), params, optimizers)
    for k, v in state.items():
        if torch.is_tensor(v):
            state[k] = torch.cat([v, v[sel]])


@torch.no_grad()
def split(params: Params, optimizers: Optimizers, state: dict, mask: Tensor, revised_opacity: bool = False,
          scale_factor: float = 1.6) -> None:
    """Replace every Gaussian in `mask` by two drawn from it: centres sampled from the Gaussian
    itself, scales divided by `scale_factor`, the rest copied (opacity o -> 1 - sqrt(1 - o) with
    `revised_opacity`, Bulò et al. 2024, so that the pair keeps the original's opacity). The
    children go to the end, after the untouched Gaussians in their old order."""
    sel = mask.nonzero().squeeze(-1)
    rest = (~mask).nonzero().squeeze(-1)
    scales = torch.exp(params["scales"][sel])
    rotmats = quat_to_rotmat(F.normalize(params["quats"][sel], dim=-1))
    noise = torch.randn(2, len(sel), 3, device=mask.device)
    offsets = (rotmats[None] @ (noise * scales[None])[..., None]).squeeze(-1)  # (2, S, 3)

    def param_fn(name: str, p: Tensor) -> Tensor:
        if name == "means":
            children = (p[sel][None] + offsets).reshape(-1, 3)
        elif name == "scales":
            children = _repeat_rows(torch.log(scales / scale_factor), 2)
        elif name == "opacities" and revised_opacity:
            children = _repeat_rows(torch.logit(1.0 - torch.sqrt(1.0 - torch.sigmoid(p[sel]))), 2)
        else:
            children = _repeat_rows(p[sel], 2)
        return torch.cat([p[rest], children])

    update_param_with_optimizer(param_fn, lambda key, v: torch.cat([v[rest], _zeros_like_rows(v, 2 * len(sel))]),
                                params, optimizers)
    for k, v in state.items():
        if torch.is_tensor(v):
            state[k] = torch.cat([v[rest], _repeat_rows(v[sel], 2)])


@torch.no_grad()
def remove(params: Params, optimizers: Optimizers, state: dict, mask: Tensor) -> None:
    """Delete every Gaussian in `mask`."""
    keep = (~mask).nonzero().squeeze(-1)
    update_param_with_optimizer(lambda name, p: p[keep], lambda key, v: v[keep], params, optimizers)
    for k, v in state.items():
        if torch.is_tensor(v):
            state[k] = v[keep]


@torch.no_grad()
def reset_opa(params: Params, optimizers: Optimizers, state: dict, value: float) -> None:
    """Lower every opacity above `value` (after the sigmoid) to `value` and forget the opacity
    moments of all Gaussians."""
    ceiling = torch.logit(torch.tensor(value)).item()
    update_param_with_optimizer(lambda name, p: p.clamp(max=ceiling), lambda key, v: torch.zeros_like(v),
                                params, optimizers, names=["opacities"])


# -- 3DGS as MCMC (Kheradmand et al. 2024) ---------------------------------------------------------
@torch.no_grad()
def _share_among_copies(params: Params, sampled: Tensor, binoms: Tensor, min_opacity: float) -> None:
    """Give each sampled Gaussian the opacity and scale that it and its new copies will share
    (one new copy per time it was drawn), in place."""
    counts = torch.bincount(sampled)[sampled] + 1
    new_op, new_scales = compute_relocation(torch.sigmoid(params["opacities"])[sampled],
                                            torch.exp(params["scales"])[sampled], counts, binoms)
    new_op = new_op.clamp(min=min_opacity, max=1.0 - torch.finfo(torch.float32).eps)
    params["opacities"].data[sampled] = torch.logit(new_op)
    params["scales"].data[sampled] = torch.log(new_scales)


@torch.no_grad()
def relocate(params: Params, optimizers: Optimizers, state: dict, mask: Tensor, binoms: Tensor,
             min_opacity: float = 0.005) -> None:
    """Move every dead Gaussian (`mask`) onto a live one drawn in proportion to opacity: the
    sources get the shared opacity/scale of eq. 9, the dead take copies of them, and the sources'
    optimiser moments and statistics are reset (the dead keep theirs, as in gsplat)."""
    dead = mask.nonzero().squeeze(-1)
    alive = (~mask).nonzero().squeeze(-1)
    probs = torch.sigmoid(params["opacities"])[alive].flatten()
    sampled = alive[multinomial_sample(probs, len(dead), replacement=True)]
    _share_among_copies(params, sampled, binoms, min_opacity)
    for p in params.values():
        p.data[dead] = p.data[sampled]
    _zero_optimizer_rows(params, optimizers, sampled)
    for v in state.values():
        if torch.is_tensor(v):
            v[sampled] = 0


@torch.no_grad()
def sample_add(params: Params, optimizers: Optimizers, state: dict, n: int, binoms: Tensor,
               min_opacity: float = 0.005) -> None:
    """Append `n` Gaussians, copies of ones drawn in proportion to opacity; the sources and the
    copies share the eq. 9 opacity/scale. The new rows start with zero moments and statistics."""
    probs = torch.sigmoid(params["opacities"]).flatten()
    sampled = multinomial_sample(probs, n, replacement=True)
    _share_among_copies(params, sampled, binoms, min_opacity)
    update_param_with_optimizer(lambda name, p: torch.cat([p, p[sampled]]),
                                lambda key, v: torch.cat([v, _zeros_like_rows(v, n)]), params, optimizers)
    for k, v in state.items():
        if torch.is_tensor(v):
            state[k] = torch.cat([v, _zeros_like_rows(v, n)])


def _steep_sigmoid(x: Tensor, k: float = 100.0, x0: float = 0.995) -> Tensor:
    return torch.sigmoid(k * (x - x0))


@torch.no_grad()
def inject_noise_to_position(params: Params, optimizers: Optimizers, state: dict, scaler: float) -> None:
    """Perturb the centres by covariance-shaped Gaussian noise times `scaler`, gated by a steep
    sigmoid of the transparency so that only nearly transparent Gaussians move noticeably."""
    opacities = torch.sigmoid(params["opacities"].flatten())
    covars, _ = quat_scale_to_covar_preci(params["quats"], torch.exp(params["scales"]), compute_preci=False)
    noise = torch.randn_like(params["means"]) * _steep_sigmoid(1.0 - opacities)[:, None] * scaler
    params["means"].data += (covars @ noise[..., None]).squeeze(-1)


"""Classifier-free guidance: combine conditional and unconditional predictions.

`cfg_model` wraps a denoiser so the sampling loop sees one function of (x, t): it runs the
unconditional and conditional branches (batched into one call by default) and combines them.
FLUX dev is guidance-distilled: the scale is an input of the model, so `distilled_guidance_model`
passes it through and runs one branch.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch


def cfg_combine(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    """uncond + scale * (cond - uncond)."""
    return uncond + scale * (cond - uncond)


def rescale_guidance(guided: torch.Tensor, cond: torch.Tensor, rescale: float) -> torch.Tensor:
    """Lin et al. 2023, sec. 3.4: bring the std of the guided prediction back to that of the conditional
    one (per sample), mixed with the guided result by `rescale` (0 = off, 0.7 suggested)."""
    if rescale <= 0:
        return guided
    dims = list(range(1, cond.ndim))
    std_cond = cond.std(dim=dims, keepdim=True)
    std_guided = guided.std(dim=dims, keepdim=True)
    rescaled = guided * (std_cond / std_guided)
    return rescale * rescaled + (1 - rescale) * guided


def _cat(a: Any, b: Any) -> Any:
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b], dim=0)
    if isinstance(a, Mapping):
        return {k: _cat(a[k], b[k]) for k in a}
    if isinstance(a, (list, tuple)):
        return type(a)(_cat(x, y) for x, y in zip(a, b))
    return a  # scalars and None are shared by both branches


def cfg_model(model: Callable[..., torch.Tensor], cond: Mapping[str, Any], uncond: Mapping[str, Any],
              scale: float, rescale: float = 0.0, batched: bool = True,
              learned_variance: bool = False) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A denoiser of (x, t) that applies classifier-free guidance around `model(x, t, **kwargs)`.

    `cond`/`uncond` are the keyword inputs of each branch (same keys). With scale == 1 only the
    conditional branch runs. `batched=False` runs the branches one after the other (less memory).
    `learned_variance`: the model outputs the noise and a variance (2x the sample's channels, as
    DeepFloyd IF and the improved-DDPM models do): guidance combines the noise channels only and the
    conditional branch's variance channels are kept.
    """
    if set(cond) != set(uncond):
        raise ValueError(f"cond and uncond inputs must have the same keys, got {sorted(cond)} and {sorted(uncond)}")

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if scale == 1.0:
            return model(x, t, **cond)
        if batched:
            tt = _cat(t, t) if isinstance(t, torch.Tensor) and t.ndim > 0 else t
            out = model(torch.cat([x, x]), tt, **_cat(dict(uncond), dict(cond)))
            out_u, out_c = out.chunk(2)
        else:
            out_u, out_c = model(x, t, **uncond), model(x, t, **cond)
        if learned_variance:
            c = x.shape[1]
            eps = rescale_guidance(cfg_combine(out_u[:, :c], out_c[:, :c], scale), out_c[:, :c], rescale)
            return torch.cat([eps, out_c[:, c:]], dim=1)
        return rescale_guidance(cfg_combine(out_u, out_c, scale), out_c, rescale)

    return guided


def distilled_guidance_model(model: Callable[..., torch.Tensor], guidance: float, key: str = "guidance",
                             **kwargs: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A denoiser of (x, t) for guidance-distilled models: the scale goes in as a (B,) tensor input."""

    def run(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        g = torch.full((x.shape[0],), float(guidance), device=x.device, dtype=torch.float32)
        return model(x, t, **{key: g}, **kwargs)

    return run


__all__ = ["cfg_combine", "cfg_model", "distilled_guidance_model", "rescale_guidance"]

"""Putting a state dict into a module (key reports that name what is missing and unexpected), and the
renaming helpers every converter shares (prefixes, swapped modulation halves)."""
from __future__ import annotations

from typing import Iterable, Mapping

import torch

from utils.errors import ConversionError

def key_report(missing: Iterable[str], unexpected: Iterable[str], limit: int = 6) -> str:
    """'missing: a, b (+3 more); unexpected: c' for conversion errors."""
    parts = []
    for label, keys in (("missing", sorted(missing)), ("unexpected", sorted(unexpected))):
        if keys:
            more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
            parts.append(f"{label}: {', '.join(keys[:limit])}{more}")
    return "; ".join(parts)


def check_keys(expected: Iterable[str], got: Iterable[str], what: str = "checkpoint") -> None:
    """Raise a ConversionError naming missing and unexpected keys when the two sets differ."""
    expected, got = set(expected), set(got)
    if expected != got:
        raise ConversionError(f"the {what} does not match the model ({key_report(expected - got, got - expected)}): "
                              "check that the weights belong to this model and preset")


def first_non_finite(state_dict: Mapping[str, torch.Tensor]) -> tuple[str, str] | None:
    """(name, 'NaN' or 'Inf') of the first floating tensor holding a NaN or an infinity, in key order."""
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.is_meta:
            continue
        t = value if value.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64) else value.float()
        if not bool(torch.isfinite(t).all()):
            return key, "NaN" if bool(torch.isnan(t).any()) else "Inf"
    return None


def check_finite(state_dict: Mapping[str, torch.Tensor], what: str = "checkpoint") -> None:
    """Refuse weights holding NaN or Inf (a diverged training, a broken conversion), naming the first tensor."""
    bad = first_non_finite(state_dict)
    if bad is not None:
        key, kind = bad
        raise ConversionError(f"the {what} holds {kind} values (first in tensor '{key}'): the weights are broken "
                              "(a diverged training or a damaged file); use an earlier or another checkpoint")


def load_into(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True,
              what: str = "checkpoint", assign: bool | None = None) -> torch.nn.Module:
    """Load converted weights; a module on the meta device takes the tensors themselves (assign).

    Weights holding NaN or Inf are refused (`check_finite`)."""
    expected = module.state_dict()
    if strict:
        check_keys(expected.keys(), state_dict.keys(), what)
    bad = [f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in state_dict.items()
           if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if bad:
        more = f" (+{len(bad) - 4} more)" if len(bad) > 4 else ""
        raise ConversionError(f"the {what} has tensors of the wrong shape ({'; '.join(bad[:4])}{more}): "
                              "the weights belong to another size or preset of this model")
    check_finite(state_dict, what)
    on_meta = any(p.is_meta for p in module.parameters())
    module.load_state_dict(dict(state_dict), strict=strict, assign=on_meta if assign is None else assign)
    return module


# -- renaming helpers shared by the converters -------------------------------------------------------


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose key starts with `prefix`, with the prefix taken off; every other key is left out.

    For one component of a combined checkpoint (`model.diffusion_model.` of an SD file, `first_stage_model.`).
    """
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def strip_shared_prefixes(state_dict: Mapping[str, torch.Tensor],
                          prefixes: Iterable[str] = ("module.",)) -> dict[str, torch.Tensor]:
    """Take off each wrapper prefix that every key carries (DataParallel's `module.`, trainer wrappers).

    The prefixes are tried in order, each once, and only when all keys share it; nothing is dropped.
    """
    sd = dict(state_dict)
    for prefix in prefixes:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def swap_halves(t: torch.Tensor) -> torch.Tensor:
    """Exchange the two halves of the first dim: an AdaLN linear's (shift, scale) <-> (scale, shift).

    Official single files (SD3, FLUX) store the final modulation as (shift, scale), diffusers as (scale, shift).
    """
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)

"""Putting a state dict into a module: key reports that name what is missing and unexpected."""
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


def load_into(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True,
              what: str = "checkpoint", assign: bool | None = None) -> torch.nn.Module:
    """Load converted weights; a module on the meta device takes the tensors themselves (assign)."""
    expected = module.state_dict()
    if strict:
        check_keys(expected.keys(), state_dict.keys(), what)
    bad = [f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in state_dict.items()
           if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if bad:
        more = f" (+{len(bad) - 4} more)" if len(bad) > 4 else ""
        raise ConversionError(f"the {what} has tensors of the wrong shape ({'; '.join(bad[:4])}{more}): "
                              "the weights belong to another size or preset of this model")
    on_meta = any(p.is_meta for p in module.parameters())
    module.load_state_dict(dict(state_dict), strict=strict, assign=on_meta if assign is None else assign)
    return module

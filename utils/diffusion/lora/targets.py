"""Choosing the layers a new LoRA adapts: named groups of layer-name endings per model, or endings given
directly (`--lora-targets to_q,to_v`)."""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

from torch import nn

from utils.diffusion.lora.routes import adaptable_layers
from utils.errors import UserError


def select_targets(model: nn.Module, groups: Iterable[str], table: Mapping[str, tuple[str, ...]],
                   implied: Callable[[tuple[str, ...]], tuple[str, ...]] | None = None,
                   layers: tuple[type, ...] = (nn.Linear,)) -> list[str]:
    """Names of the `layers` of `model` whose name ends with an ending of one of `groups` (a group that
    `table` does not name is an ending itself); `implied` adds groups that the chosen ones imply."""
    groups = tuple(groups)
    if implied is not None:
        groups += tuple(g for g in implied(groups) if g not in groups)
    endings = [e for g in groups for e in table.get(g, (g,))]
    found = [name for name, m in adaptable_layers(model).items()
             if isinstance(m, layers) and any(name == e or name.endswith("." + e) for e in endings)]
    if not found:
        raise UserError(f"no layer of this model matches the LoRA targets {', '.join(groups)}: choose from "
                        f"{', '.join(table)} or give layer-name endings")
    return found


def closed_form_parameters(model: nn.Module, names: Iterable[str], rank: int) -> int:
    """The parameters a rank-`rank` LoRA adds on `names`: r * (in + out) per linear layer,
    r * (in * kh * kw + out) per convolution."""
    total = 0
    for name in names:
        m = model.get_submodule(name)
        if hasattr(m, "get_base_layer"):
            m = m.get_base_layer()
        if isinstance(m, nn.Conv2d):
            total += rank * (m.in_channels * m.kernel_size[0] * m.kernel_size[1] + m.out_channels)
        else:
            total += rank * (m.in_features + m.out_features)
    return total


__all__ = ["closed_form_parameters", "select_targets"]

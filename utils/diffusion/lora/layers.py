"""LoRA layers through peft: injection by exact module names, several adapters with their own scales,
merging into the base weights and back, removal, and reading an adapter's matrices out.

peft wraps each targeted `nn.Linear` / `nn.Conv2d` in a `LoraLayer` that keeps the base layer
(`base_layer`) untouched and adds `scaling * B(A(dropout(x)))` per active adapter, so the state-dict keys
of the base weights gain a `.base_layer` step while adapters are in; `unload` takes the wrappers out.
"""
from __future__ import annotations

import collections
import re
import warnings
from typing import Iterable, Mapping

import torch
from torch import nn

from utils.errors import UserError


def tuner_layers(module: nn.Module) -> dict[str, nn.Module]:
    """The LoRA-wrapped layers of `module`, by name."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {name: m for name, m in module.named_modules() if isinstance(m, BaseTunerLayer)}


def adapter_names(module: nn.Module) -> list[str]:
    """Adapters present in `module`, in the order they were added."""
    seen: dict[str, None] = {}
    for layer in tuner_layers(module).values():
        for name in layer.lora_A:
            seen[name] = None
    return list(seen)


def inject(module: nn.Module, targets: Mapping[str, tuple[int, float]], adapter: str, dropout: float = 0.0,
           init: bool | str = True) -> list[str]:
    """Add adapter `adapter` to the layers named in `targets` ({module name: (rank, alpha)}); the scaling
    of each is alpha / rank. `init=True`: peft's default start (A Kaiming-uniform, B zero: the adapted model
    starts equal to the base). Returns the names adapted."""
    from peft import LoraConfig, inject_adapter_in_model

    if not targets:
        raise UserError("no LoRA target modules were given")
    if hasattr(nn.ModuleDict(), adapter):
        raise UserError(f"'{adapter}' cannot name a LoRA (it is a method of torch modules): pick another name")
    for name, (rank, _) in targets.items():
        if rank < 1:
            raise UserError(f"LoRA rank must be at least 1, got {rank} for {name}: pass --rank 1 or more")
    ranks = collections.Counter(r for r, _ in targets.values())
    alphas = collections.Counter(a for _, a in targets.values())
    r, alpha = ranks.most_common(1)[0][0], alphas.most_common(1)[0][0]
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, init_lora_weights=init,
                        target_modules=sorted(targets),
                        rank_pattern={re.escape(n): rk for n, (rk, _) in targets.items() if rk != r},
                        alpha_pattern={re.escape(n): a for n, (_, a) in targets.items() if a != alpha})
    with warnings.catch_warnings():  # a second adapter is what this function is for
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        inject_adapter_in_model(config, module, adapter_name=adapter)
    return sorted(targets)


def activate(module: nn.Module, scales: Mapping[str, float], trainable: Iterable[str] = ()) -> None:
    """Make exactly the adapters in `scales` active, each scaled by its factor (on top of alpha / rank);
    the parameters of adapters in `trainable` require grad, all others not."""
    trainable = set(trainable)
    for layer in tuner_layers(module).values():
        present = [a for a in scales if a in layer.lora_A]
        layer.set_adapter(present or list(scales), inference_mode=True)
        for name, s in scales.items():
            layer.set_scale(name, s)
        for name in layer.lora_A:
            for p in (*layer.lora_A[name].parameters(), *layer.lora_B[name].parameters()):
                p.requires_grad_(name in trainable)


def merge(module: nn.Module) -> None:
    """Add the active adapters into the base weights (calls then cost no more than the base model's)."""
    for layer in tuner_layers(module).values():
        if not layer.merged:
            layer.merge()


def unmerge(module: nn.Module) -> None:
    """Subtract what `merge` added (the base weights come back within float rounding)."""
    for layer in tuner_layers(module).values():
        while layer.merged:
            layer.unmerge()


def is_merged(module: nn.Module) -> bool:
    return any(layer.merged for layer in tuner_layers(module).values())


def delete(module: nn.Module, adapter: str) -> None:
    """Remove one adapter; layers left without any adapter go back to their plain base layer."""
    for layer in tuner_layers(module).values():
        if adapter in layer.lora_A:
            layer.delete_adapter(adapter)
    _restore_bare(module)


def unload(module: nn.Module) -> None:
    """Take every LoRA wrapper out (merged updates are unmerged first): the module is as before injection."""
    unmerge(module)
    for name in sorted(tuner_layers(module), key=lambda n: -n.count(".")):
        _replace(module, name, tuner_layers(module)[name].get_base_layer())


def _restore_bare(module: nn.Module) -> None:
    for name, layer in sorted(tuner_layers(module).items(), key=lambda kv: -kv[0].count(".")):
        if not len(layer.lora_A):
            _replace(module, name, layer.get_base_layer())


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def adapter_weights(module: nn.Module, adapter: str) -> dict[str, tuple[torch.Tensor, torch.Tensor, float, float]]:
    """{layer name: (A (r, in[, kh, kw]), B (out, r[, 1, 1]), rank, alpha)} of one adapter, detached."""
    out = {}
    for name, layer in tuner_layers(module).items():
        if adapter in layer.lora_A:
            a = layer.lora_A[adapter].weight.detach()
            b = layer.lora_B[adapter].weight.detach()
            out[name] = (a, b, layer.r[adapter], layer.lora_alpha[adapter])
    return out


def set_adapter_weights(module: nn.Module, adapter: str, weights: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Copy (A, B) into the adapter's layers (shapes are checked; dtype and device follow the layer)."""
    layers = tuner_layers(module)
    for name, (a, b) in weights.items():
        layer = layers[name]
        for target, value, what in ((layer.lora_A[adapter].weight, a, "A"), (layer.lora_B[adapter].weight, b, "B")):
            if tuple(target.shape) != tuple(value.shape):
                raise UserError(f"LoRA matrix {what} of {name} has shape {tuple(value.shape)}, the layer needs "
                                f"{tuple(target.shape)}: the file is for another model or size")
            with torch.no_grad():
                target.copy_(value.to(target.dtype))


def lora_parameters(module: nn.Module, adapter: str) -> list[nn.Parameter]:
    """The trainable matrices of one adapter."""
    params = []
    for layer in tuner_layers(module).values():
        if adapter in layer.lora_A:
            params += [*layer.lora_A[adapter].parameters(), *layer.lora_B[adapter].parameters()]
    return params


def base_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """`module.state_dict()` without the adapters and with the base layers under their own names."""
    out = {}
    for key, value in module.state_dict().items():
        if ".lora_" in key:
            continue
        out[key.replace(".base_layer.", ".")] = value
    return out


__all__ = ["activate", "adapter_names", "adapter_weights", "base_state_dict", "delete", "inject", "is_merged",
           "lora_parameters", "merge", "set_adapter_weights", "tuner_layers", "unload", "unmerge"]

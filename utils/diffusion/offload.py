"""CPU offload of a pipeline's models through accelerate's hooks.

Model offload keeps every model on the CPU and moves each one to the execution device only while it
runs (the one before it goes back): the peak is the largest model instead of all of them. Sequential
offload streams each layer's weights to the device as that layer runs: a few GB of GPU memory, much
slower. Both wrap `forward`, so a model a pipeline calls through other methods (a VAE's
`decode_latents`) runs behind a `MethodCalls` module whose forward makes the call.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn


class MethodCalls(nn.Module):
    """`calls("decode_latents", z)` runs `module.decode_latents(z)` inside this module's forward, so
    offload hooks move `module` (a child of this one) to the execution device for the call."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.module, method)(*args, **kwargs)


def model_offload(modules: Sequence[nn.Module], device: torch.device) -> list[Any]:
    """Offload whole models, given in the order a call runs them; returns the hooks (`hook.offload()`
    sends a model back to the CPU)."""
    from accelerate import cpu_offload_with_hook

    hooks: list[Any] = []
    hook = None
    for module in modules:
        module.to("cpu")
        _, hook = cpu_offload_with_hook(module, device, prev_module_hook=hook)
        hooks.append(hook)
    return hooks


def sequential_offload(streamed: Sequence[nn.Module], whole: Sequence[nn.Module], device: torch.device) -> list[Any]:
    """Stream the weights of `streamed` layer by layer; move the models of `whole` at once (a VAE,
    small, whose attention reads its weights outside of forward calls). Returns the hooks of `whole`."""
    from accelerate import cpu_offload

    for module in streamed:
        module.to("cpu")
        cpu_offload(module, execution_device=device)
        pin_device(module, device)
    return model_offload(whole, device)


def pin_device(module: nn.Module, device: torch.device) -> None:
    """After sequential offload the parameters sit on the meta device, so a `device` property that reads
    them (text encoders move their token ids there) would say 'meta': make it report `device`."""
    cls = type(module)
    if isinstance(getattr(cls, "device", None), property):
        module.__class__ = type(cls.__name__, (cls,), {"device": property(lambda self: device)})


__all__ = ["MethodCalls", "model_offload", "pin_device", "sequential_offload"]

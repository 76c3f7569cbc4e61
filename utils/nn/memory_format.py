"""Convolution networks run faster channels-last on the CPU (oneDNN's native layout)."""
from __future__ import annotations

import torch
from torch import nn


def to_channels_last(module: nn.Module, x: torch.Tensor, setting: bool | None, probe: torch.Tensor) -> torch.Tensor:
    """`x` in the memory format `module` should run in; the module's weights follow once.

    `setting` None means channels-last on the CPU only. Switching changes strides, not values or
    names, so state dicts are unchanged (save them with `.contiguous()` tensors). `probe` is one
    conv weight, used to see whether the switch already happened.
    """
    use = setting if setting is not None else x.device.type == "cpu"
    if not use:
        return x
    if not probe.is_meta and not probe.is_contiguous(memory_format=torch.channels_last):
        module.to(memory_format=torch.channels_last)
    return x.contiguous(memory_format=torch.channels_last)

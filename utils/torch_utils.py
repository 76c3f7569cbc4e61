"""Devices, dtypes and seeded noise: the one home of these helpers for every pipeline.

Noise is drawn on the CPU in float32 and then moved, so a seed gives the same numbers on any
device. A batch may carry one generator per sample (a list): each sample then depends only on its
own generator, not on what else is in the batch. The diffusion pipelines' rule for turning a `seed`
into one generator per image lives in `utils.diffusion.noise`.
"""
from __future__ import annotations

from typing import Sequence

import torch

from utils.errors import UserError

_DTYPES = {
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`None`/'auto' picks CUDA when available, else CPU; a named device must exist."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device '{device}': use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{device}' was asked for but no CUDA GPU is visible: use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"device '{device}' does not exist: {torch.cuda.device_count()} CUDA GPU(s) are visible")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device '{device}' was asked for but MPS is not available: use --device cpu")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device | None = None,
                  default_cuda: torch.dtype = torch.float32) -> torch.dtype:
    """`None` gives float32 on CPU and `default_cuda` on CUDA; strings like 'bf16' are accepted."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return default_cuda if device is not None and device.type == "cuda" else torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise UserError(f"unknown dtype '{dtype}': use one of fp32, fp16, bf16") from None


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator; noise is drawn on the CPU so a seed gives the same result on any device."""
    gen = torch.Generator("cpu")
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


Generators = torch.Generator | Sequence[torch.Generator] | None
"""One generator for a whole batch, one per sample (a list), or None (torch's global generator)."""


def randn(shape: Sequence[int], generator: Generators = None, device: torch.device | str = "cpu",
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise drawn on the CPU in float32, then moved: device-independent for a seed.

    With a list of generators, sample i of the leading axis is drawn from generator i alone.
    """
    shape = tuple(shape)
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}")
        return torch.cat([randn((1, *shape[1:]), g, device, dtype) for g in generator], dim=0)
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


def randn_like(x: torch.Tensor, generator: Generators = None) -> torch.Tensor:
    """`randn` with the shape, device and dtype of `x`."""
    return randn(x.shape, generator, x.device, x.dtype)


__all__ = ["Generators", "make_generator", "randn", "randn_like", "resolve_device", "resolve_dtype"]

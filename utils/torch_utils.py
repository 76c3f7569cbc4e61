"""Device, dtype and seeded-noise helpers shared by every pipeline."""
from __future__ import annotations

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


def randn(shape: tuple[int, ...], generator: torch.Generator | None = None, device: torch.device | str = "cpu",
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise drawn on the CPU in float32, then moved: device-independent for a seed."""
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)

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


_RANDOM_CALLS = frozenset({
    torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.bernoulli_, torch.Tensor.random_,
    torch.Tensor.exponential_, torch.Tensor.geometric_, torch.Tensor.log_normal_, torch.Tensor.cauchy_,
    torch.randn, torch.rand, torch.randint, torch.randperm, torch.normal, torch.bernoulli, torch.multinomial,
    torch.poisson, torch.randn_like, torch.rand_like, torch.randint_like})
"""torch's random draws that take a `generator=`: tensor fills and factories."""
_TAKES_GENERATOR: dict = {}


def _takes_generator(func) -> bool:
    """Whether `func` is a random draw that takes `generator=`: the calls above, and the weight-init schemes
    of torch.nn.init (and the wrappers libraries such as transformers put around them)."""
    if func in _RANDOM_CALLS:
        return True
    found = _TAKES_GENERATOR.get(func)
    if found is None:
        import inspect

        found = False
        if getattr(func, "__name__", "").endswith("_") and "init" in str(getattr(func, "__module__", "")):
            try:
                found = "generator" in inspect.signature(func).parameters
            except (TypeError, ValueError):
                found = False
        _TAKES_GENERATOR[func] = found
    return found


class local_seed(torch.overrides.TorchFunctionMode):
    """`with local_seed(0): net = Net()`: every random draw inside that names no generator (module inits,
    `torch.randn`, `nn.init.*`) comes from one CPU generator seeded with `seed`, never the global RNG.

    So random weights (the `tiny` presets) are the same on every build whatever other threads draw
    meanwhile, and the caller's global RNG is left as it was. On the CPU the draws equal those after
    `torch.manual_seed(seed)`. The mode is per thread.
    """

    def __init__(self, seed: int = 0):
        super().__init__()
        self.generator = torch.Generator("cpu").manual_seed(int(seed))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if kwargs.get("generator") is None and _takes_generator(func):
            device = kwargs.get("device")
            target = args[0] if args and isinstance(args[0], torch.Tensor) else None
            on_cpu = (target.device.type in ("cpu", "meta") if target is not None
                      else device is None or torch.device(device).type == "cpu")
            if on_cpu:
                kwargs["generator"] = self.generator
        return func(*args, **kwargs)


__all__ = ["Generators", "local_seed", "make_generator", "randn", "randn_like", "resolve_device", "resolve_dtype"]

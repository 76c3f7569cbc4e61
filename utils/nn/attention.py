"""Scaled dot-product attention with one entry point and selectable backends.

Every model in the zoo calls `attention(q, k, v, mask, scale)` on (batch, heads, length, head_dim)
tensors. The backend is chosen per call:

- "sdpa":     `torch.nn.functional.scaled_dot_product_attention` (any device; the default);
- "math":     plain matmul + softmax in the input dtype's accumulation, the reference for parity tests;
- "xformers": `xformers.ops.memory_efficient_attention` (CUDA only, when installed);
- "flash":    `flash_attn.flash_attn_func` (CUDA, fp16/bf16, no mask, when installed);
- "auto":     flash when it can serve the call, else xformers when it can, else sdpa.

The choice comes from the innermost `attention_backend(...)` context (a context variable, so two
threads or tasks can use different backends), else `set_attention_backend(...)`, else the
environment variable CVGEN_ATTENTION_BACKEND, else "auto". Asking for an unavailable backend by name
is a `UserError`; "auto" silently falls back.
"""
from __future__ import annotations

import contextvars
import importlib.util
import math
import os
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

import torch
import torch.nn.functional as F

from utils.errors import UserError, did_you_mean

BACKENDS = ("auto", "sdpa", "math", "xformers", "flash")
ENV_VAR = "CVGEN_ATTENTION_BACKEND"

_context_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar("cvgen_attention_backend", default=None)
_global_backend: str | None = None


def check_attention_backend(name: str) -> str:
    """The canonical backend name for `name` (aliases such as 'flash-attn' accepted); a UserError otherwise."""
    key = str(name).lower().strip()
    key = {"flash_attn": "flash", "flash-attn": "flash", "native": "sdpa", "torch": "sdpa"}.get(key, key)
    if key not in BACKENDS:
        raise UserError(f"unknown attention backend '{name}': {did_you_mean(str(name), BACKENDS)}")
    return key


@lru_cache(maxsize=None)
def _installed(module: str) -> bool:
    # find_spec does not import the package: importing xformers/flash_attn is slow and may warn.
    return importlib.util.find_spec(module) is not None


def available_attention_backends() -> list[str]:
    """The backends that can run here at all (device and dtype limits still apply per call)."""
    names = ["sdpa", "math"]
    cuda = torch.cuda.is_available()
    if cuda and _installed("xformers"):
        names.append("xformers")
    if cuda and _installed("flash_attn"):
        names.append("flash")
    return names


def set_attention_backend(name: str | None) -> None:
    """Set the process-wide backend ("auto" or None restores automatic choice)."""
    global _global_backend
    _global_backend = None if name is None else check_attention_backend(name)


def get_attention_backend() -> str:
    """The backend name currently asked for (may be "auto")."""
    name = _context_backend.get() or _global_backend or os.environ.get(ENV_VAR) or "auto"
    return check_attention_backend(name)


@contextmanager
def attention_backend(name: str) -> Iterator[str]:
    """Use backend `name` for every `attention` call inside the block (this thread/task only)."""
    token = _context_backend.set(check_attention_backend(name))
    try:
        yield _context_backend.get()  # type: ignore[misc]
    finally:
        _context_backend.reset(token)


def _flash_problem(q: torch.Tensor, mask: torch.Tensor | None) -> str | None:
    """Why flash_attn cannot serve this call, or None when it can."""
    if not _installed("flash_attn"):
        return "flash_attn is not installed (pip install flash-attn)"
    if q.device.type != "cuda":
        return f"flash_attn runs on CUDA only and the tensors are on {q.device.type}"
    if q.dtype not in (torch.float16, torch.bfloat16):
        return f"flash_attn needs float16 or bfloat16 tensors, got {str(q.dtype).replace('torch.', '')}"
    if mask is not None:
        return "flash_attn takes no attention mask"
    if q.shape[-1] > 256 or q.shape[-1] % 8:
        return f"flash_attn needs a head dim that is a multiple of 8 up to 256, got {q.shape[-1]}"
    return None


def _xformers_problem(q: torch.Tensor) -> str | None:
    if not _installed("xformers"):
        return "xformers is not installed (pip install xformers)"
    if q.device.type != "cuda":
        return f"xformers runs on CUDA only and the tensors are on {q.device.type}"
    return None


def resolve_attention_backend(q: torch.Tensor, k: torch.Tensor | None = None, v: torch.Tensor | None = None,
                              mask: torch.Tensor | None = None, backend: str | None = None) -> str:
    """The concrete backend ("sdpa", "math", "xformers" or "flash") that `attention` would use.

    An explicitly named backend that cannot serve these tensors raises `UserError` saying why.
    """
    name = check_attention_backend(backend) if backend is not None else get_attention_backend()
    if name == "auto":
        if _flash_problem(q, mask) is None:
            return "flash"
        if _xformers_problem(q) is None:
            return "xformers"
        return "sdpa"
    problem = {"flash": lambda: _flash_problem(q, mask), "xformers": lambda: _xformers_problem(q)}.get(name)
    if problem is not None:
        why = problem()
        if why is not None:
            raise UserError(f"attention backend '{name}' was asked for but {why}: "
                            "use attention_backend('auto') or 'sdpa'")
    return name


def _normalize_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Bring a mask to a shape that broadcasts against (B, H, Lq, Lk).

    A boolean mask keeps the positions that are True; a float mask is added to the logits.
    A 2-D mask is a (B, Lk) key padding mask; give (Lq, Lk) masks as (1, 1, Lq, Lk).
    """
    if mask is None or mask.ndim == 4:
        return mask
    if mask.ndim == 2:
        return mask[:, None, None, :]
    if mask.ndim == 3:  # (B, Lq, Lk): the same mask for every head
        return mask[:, None]
    raise ValueError(f"attention mask must have 2, 3 or 4 dims, got shape {tuple(mask.shape)}")


def _math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                    scale: float) -> torch.Tensor:
    logits = torch.matmul(q, k.transpose(-2, -1)) * scale
    if mask is not None:
        if mask.dtype == torch.bool:
            logits = logits.masked_fill(~mask, float("-inf"))
        else:
            logits = logits + mask.to(logits.dtype)
    weights = torch.softmax(logits.float(), dim=-1).to(q.dtype)
    return torch.matmul(weights, v)


def _xformers_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                        scale: float) -> torch.Tensor:
    import xformers.ops as xops

    bias = None
    if mask is not None:
        shape = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        if mask.dtype == torch.bool:
            bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, float("-inf"))
        else:
            bias = mask.to(q.dtype)
        # xformers wants a dense bias whose last dim is 8-aligned in memory: pad then slice.
        pad = (-shape[-1]) % 8
        full = torch.zeros(*shape[:-1], shape[-1] + pad, dtype=q.dtype, device=q.device)
        full[..., : shape[-1]] = bias.expand(shape)
        bias = full[..., : shape[-1]]
    # xformers takes (B, L, H, D).
    out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          attn_bias=bias, scale=scale)
    return out.transpose(1, 2)


def _flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    from flash_attn import flash_attn_func

    out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), softmax_scale=scale)
    return out.transpose(1, 2)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              scale: float | None = None, backend: str | None = None) -> torch.Tensor:
    """softmax(q kᵀ · scale + mask) v over (B, heads, L, D) tensors; returns (B, heads, Lq, Dv).

    `mask`: boolean (True = attend) or additive float, broadcastable to (B, heads, Lq, Lk), or a 2-D
    (B, Lk) key padding mask, or (B, Lq, Lk) shared by all heads. `scale` defaults to 1/sqrt(D).
    `backend` overrides the current setting for this call only.
    """
    if q.ndim != 4:
        raise ValueError(f"attention expects (batch, heads, length, head_dim) tensors, got shape {tuple(q.shape)}")
    mask = _normalize_mask(mask)
    name = resolve_attention_backend(q, k, v, mask, backend)
    if name == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    if name == "math":
        return _math_attention(q, k, v, mask, scale)
    if name == "xformers":
        return _xformers_attention(q, k, v, mask, scale)
    return _flash_attention(q, k, v, scale)


__all__ = ["BACKENDS", "attention", "attention_backend", "available_attention_backends", "check_attention_backend",
           "get_attention_backend", "resolve_attention_backend", "set_attention_backend"]

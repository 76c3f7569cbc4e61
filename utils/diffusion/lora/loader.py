"""LoRA files into a pipeline's models: matching a file's modules to native ones, combining the pairs that
land on one fused layer, injecting them as one peft adapter per file, and the scale, fuse, unfuse and
unload operations the pipeline base exposes (`DiffusionPipeline.load_lora` and friends).

One file becomes one adapter. A file's pairs that land on the same native layer (diffusers' to_q, to_k and
to_v on FLUX's fused qkv) are stacked along the rank: A = [A_q; A_k; A_v] and B holds each s_i * B_i in its
rows and columns, so the adapter's update is exactly the sum of the file's updates and its scaling is 1;
the user's scale multiplies it (peft's `set_scale`).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from utils.diffusion.lora import layers as L
from utils.diffusion.lora.formats import LoraPair, read_lora_file, split_pairs
from utils.diffusion.lora.routes import LoraComponent, Part
from utils.errors import UserError, warn_user
from utils.weights.keys import swap_halves


def match_pair(path: str, components: Sequence[LoraComponent]) -> tuple[LoraComponent, tuple[Part, ...]] | None:
    """The component and native parts a file's module path names (longest prefix first), or None."""
    candidates = sorted(((c, p) for c in components for p in c.prefixes), key=lambda cp: -len(cp[1]))
    for comp, prefix in candidates:
        if not prefix:
            rest = path
        elif path.startswith(prefix + ".") or path.startswith(prefix + "_"):
            rest = path[len(prefix) + 1:]
        else:
            continue
        parts = comp.resolve(rest)
        if parts:
            return comp, parts
    return None


def _as_shape(t: torch.Tensor, conv: bool, kernel: tuple[int, ...] = (1, 1)) -> torch.Tensor:
    if conv and t.ndim == 2:
        return t.reshape(*t.shape, *([1] * len(kernel))) if tuple(kernel) == (1, 1) else t
    if not conv and t.ndim == 4 and tuple(t.shape[2:]) == (1, 1):
        return t.reshape(t.shape[0], t.shape[1])
    return t


def combine(pieces: Sequence[tuple[Part, LoraPair]], layer: nn.Module, name: str,
            where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) of one adapter on `layer` whose update is the sum of the pieces' scaled updates."""
    conv = isinstance(layer, nn.Conv2d)
    n_in = layer.in_channels if conv else layer.in_features
    n_out = layer.out_channels if conv else layer.out_features
    kernel = tuple(layer.kernel_size) if conv else ()
    downs = [_as_shape(p.down.float(), conv, kernel) for _, p in pieces]
    for (part, pair), down in zip(pieces, downs):
        want = (pair.rank, n_in, *kernel)
        if tuple(down.shape) != want:
            raise UserError(f"{where}: {pair.path} has a down matrix of shape {tuple(down.shape)} but {name} of this "
                            f"model needs {want}: the LoRA was trained for another model or size")
    rank = sum(p.rank for _, p in pieces)
    a = torch.cat(downs, dim=0)
    b = torch.zeros(n_out, rank, *([1, 1] if conv else []))
    col = 0
    for part, pair in pieces:
        up = _as_shape(pair.up.float(), conv) * pair.scale
        if part.swap:
            up = swap_halves(up)
        start, stop = part.rows or (0, n_out)
        if up.shape[0] != stop - start or stop > n_out:
            raise UserError(f"{where}: {pair.path} updates {up.shape[0]} output rows but {name} of this model has "
                            f"{stop - start} there: the LoRA was trained for another model or size")
        b[start:stop, col:col + pair.rank] = up
        col += pair.rank
    return a, b


def resolve_file(pairs: Sequence[LoraPair], components: Sequence[LoraComponent], where: str
                 ) -> tuple[dict[int, dict[str, list[tuple[Part, LoraPair]]]], list[str]]:
    """{component index: {native layer: pieces}} and the module paths that matched nothing."""
    plan: dict[int, dict[str, list[tuple[Part, LoraPair]]]] = {}
    unmatched = []
    index = {id(c): i for i, c in enumerate(components)}
    for pair in pairs:
        found = match_pair(pair.path, components)
        if found is None:
            unmatched.append(pair.path)
            continue
        comp, parts = found
        if len(parts) != 1:
            raise UserError(f"{where}: {pair.path} names several layers of this model; it is not a LoRA module")
        plan.setdefault(index[id(comp)], {}).setdefault(parts[0].module, []).append((parts[0], pair))
    return plan, sorted(unmatched)


def _adapter_name(source: Any, taken: Sequence[str]) -> str:
    stem = Path(str(source).rstrip("/\\")).stem or "lora"
    base = re.sub(r"[^A-Za-z0-9_]", "_", stem)[:48] or "lora"
    if base[0].isdigit():
        base = f"lora_{base}"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


class LoraState:
    """The adapters loaded into one pipeline: their order, scales, and whether they are fused."""

    def __init__(self) -> None:
        self.scales: dict[str, float] = {}
        self.sources: dict[str, str] = {}
        self.fused = False


def state_of(pipe: Any) -> LoraState:
    state = pipe.__dict__.get("_lora_state")
    if state is None:
        state = pipe._lora_state = LoraState()
    return state


def _modules(pipe: Any) -> list[nn.Module]:
    return [c.module for c in pipe.lora_components()]


def _refresh(pipe: Any) -> None:
    state = state_of(pipe)
    for module in _modules(pipe):
        present = set(L.adapter_names(module))
        scales = {n: s for n, s in state.scales.items() if n in present}
        if scales:
            L.activate(module, scales)


def load_lora(pipe: Any, source: str | os.PathLike, scale: float = 1.0, name: str | None = None,
              tensors: dict[str, torch.Tensor] | None = None, metadata: dict | None = None) -> str:
    """Load one LoRA file as a new adapter of `pipe` (see `DiffusionPipeline.load_lora`); returns its name."""
    if getattr(pipe, "offload", None) == "sequential":
        raise UserError("LoRA files cannot be loaded into a pipeline with sequential CPU offload: load the LoRA "
                        "first, then enable offload (or use model offload)")
    state = state_of(pipe)
    if name is not None and name in state.scales:
        raise UserError(f"a LoRA named '{name}' is already loaded: pick another name or unload it first")
    where = f"LoRA '{source}'"
    if tensors is None:
        tensors, metadata = read_lora_file(source)
    pairs = split_pairs(tensors, metadata, where)
    if not pairs:
        raise UserError(f"{where} holds no LoRA matrices: it is not a LoRA file")
    components = pipe.lora_components()
    plan, unmatched = resolve_file(pairs, components, where)
    model = getattr(getattr(pipe, "spec", None), "name", type(pipe).__name__)
    if not plan:
        raise UserError(f"{where} matches no layer of {model} (first keys: {', '.join(unmatched[:3])}): it is a LoRA "
                        "for another model; use one trained for this model")
    if unmatched:
        warn_user(f"{where}: {len(unmatched)} of {len(pairs)} LoRA modules match no layer of {model} and were "
                  f"skipped (first: {', '.join(unmatched[:3])})")
    adapter = name or _adapter_name(source, list(state.scales))
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", adapter):
        raise UserError(f"LoRA name '{adapter}' must be letters, digits and underscores (not starting with a digit)")
    fused = state.fused
    if fused:
        unfuse_lora(pipe)
    for i, targets in plan.items():
        comp = components[i]
        native = comp.native_modules()
        weights = {n: combine(pieces, native[n], n, where) for n, pieces in targets.items()}
        L.inject(comp.module, {n: (a.shape[0], float(a.shape[0])) for n, (a, _) in weights.items()}, adapter)
        L.set_adapter_weights(comp.module, adapter, weights)
    state.scales[adapter] = float(scale)
    state.sources[adapter] = str(source)
    _refresh(pipe)
    if fused:
        fuse_lora(pipe)
    return adapter


def set_lora_scale(pipe: Any, name: str, scale: float) -> None:
    state = state_of(pipe)
    if name not in state.scales:
        raise UserError(f"no LoRA named '{name}' is loaded (loaded: {', '.join(state.scales) or 'none'})")
    fused = state.fused
    if fused:
        unfuse_lora(pipe)
    state.scales[name] = float(scale)
    _refresh(pipe)
    if fused:
        fuse_lora(pipe)


def fuse_lora(pipe: Any) -> None:
    """Add every loaded adapter (at its scale) into the base weights."""
    state = state_of(pipe)
    if not state.scales:
        raise UserError("no LoRA is loaded: call load_lora() first")
    for module in _modules(pipe):
        L.merge(module)
    state.fused = True


def unfuse_lora(pipe: Any) -> None:
    """Take the fused adapters back out of the base weights (the adapters stay loaded)."""
    for module in _modules(pipe):
        L.unmerge(module)
    state_of(pipe).fused = False


def unload_lora(pipe: Any, name: str | None = None) -> None:
    """Remove one adapter (or all): the models are as before loading them."""
    state = state_of(pipe)
    if name is not None and name not in state.scales:
        raise UserError(f"no LoRA named '{name}' is loaded (loaded: {', '.join(state.scales) or 'none'})")
    fused = state.fused
    if fused:
        unfuse_lora(pipe)
    for module in _modules(pipe):
        if name is None:
            L.unload(module)
        else:
            L.delete(module, name)
    if name is None:
        state.scales.clear()
        state.sources.clear()
    else:
        state.scales.pop(name)
        state.sources.pop(name)
    _refresh(pipe)
    if fused and state.scales:
        fuse_lora(pipe)


def parse_lora_arg(text: str) -> tuple[str, float]:
    """'path[:scale]' of the command lines -> (path, scale); a path that exists keeps its colons."""
    if Path(os.path.expanduser(text)).exists():
        return text, 1.0
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            return head, float(tail)
        except ValueError:
            pass
    return text, 1.0


__all__ = ["LoraState", "combine", "fuse_lora", "load_lora", "match_pair", "parse_lora_arg", "resolve_file",
           "set_lora_scale", "state_of", "unfuse_lora", "unload_lora"]

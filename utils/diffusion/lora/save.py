"""Writing an adapter of a pipeline's models as a LoRA file: the diffusers/peft format (what diffusers'
`load_lora_weights` and this zoo read, with diffusers' `lora_adapter_metadata` header giving rank and alpha)
or kohya's (`lora_unet_*` / `lora_te1_*` with `.alpha`, in the official layout's names, as sd-scripts writes
for SDXL, SD3 and FLUX; in diffusers' names for SD 1.x / 2.x, which sd-scripts trains on diffusers' UNet).

A native fused layer (FLUX's and SD3's `qkv`, FLUX's single-block `linear1`) is written, in the diffusers
format, as one pair per diffusers projection: the same A and the rows of B that projection covers, which is
the same update.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from utils.diffusion.lora import layers as L
from utils.diffusion.lora.formats import kohya_tensors, peft_tensors, write_lora_file
from utils.diffusion.lora.routes import LoraComponent
from utils.errors import UserError
from utils.weights.keys import swap_halves

FORMATS = ("diffusers", "kohya")


def adapter_tensors(components: Sequence[LoraComponent], adapter: str, fmt: str = "diffusers"
                    ) -> tuple[dict, dict[str, Any]]:
    """(tensors, diffusers metadata) of `adapter` across `components` in format `fmt`."""
    if fmt not in FORMATS:
        raise UserError(f"LoRA format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    tensors: dict = {}
    metadata: dict[str, Any] = {}
    for comp in components:
        weights = L.adapter_weights(comp.module, adapter)
        if not weights:
            continue
        exports = comp.export_names()
        targets, ranks, alphas = [], set(), set()
        for native, (a, b, rank, alpha) in sorted(weights.items()):
            ranks.add(rank)
            alphas.add(alpha)
            pieces = exports.get(native)
            if fmt == "kohya":
                names = [n for n, part in pieces or () if not part.rows and not part.swap] if comp.kohya_uses_aliases else []
                name = names[0] if len(names) == 1 else native
                tensors.update(kohya_tensors(f"{comp.kohya_prefix}_{name.replace('.', '_')}", a, b, alpha))
                continue
            if not pieces:
                tensors.update(peft_tensors(f"{comp.save_prefix}.{native}", a, b))
                targets.append(native)
                continue
            covered = sum((p.rows[1] - p.rows[0]) if p.rows else b.shape[0] for _, p in pieces)
            if covered != b.shape[0]:
                raise UserError(f"{native} cannot be written in the diffusers layout (its diffusers names cover "
                                f"{covered} of {b.shape[0]} rows): save with --lora-format kohya")
            for name, part in pieces:
                rows = b[part.rows[0]:part.rows[1]] if part.rows else b
                tensors.update(peft_tensors(f"{comp.save_prefix}.{name}", a, swap_halves(rows) if part.swap else rows))
                targets.append(name)
        if fmt == "diffusers":
            if len(ranks) != 1 or len(alphas) != 1:
                raise UserError(f"the adapter '{adapter}' has several ranks or alphas in {comp.attr}: save it with "
                                "--lora-format kohya (per-module alphas)")
            p = comp.save_prefix
            metadata.update({f"{p}.r": int(ranks.pop()), f"{p}.lora_alpha": float(alphas.pop()),
                             f"{p}.target_modules": sorted(targets), f"{p}.lora_dropout": 0.0,
                             f"{p}.init_lora_weights": True, f"{p}.use_rslora": False, f"{p}.use_dora": False,
                             f"{p}.bias": "none"})
    if not tensors:
        raise UserError(f"no adapter named '{adapter}' is in this pipeline's models")
    return tensors, metadata


def save_adapter(components: Sequence[LoraComponent], adapter: str, path: str | os.PathLike,
                 fmt: str = "diffusers", extra: dict[str, str] | None = None) -> Path:
    """Write `adapter` to `path` (.safetensors) atomically."""
    tensors, metadata = adapter_tensors(components, adapter, fmt)
    return write_lora_file(path, tensors, metadata if fmt == "diffusers" else None, extra)


__all__ = ["FORMATS", "adapter_tensors", "save_adapter"]

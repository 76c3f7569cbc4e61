"""LoRA files as they come: reading them, telling their format, splitting them into low-rank pairs, and
writing them in the diffusers/peft or the kohya format.

Formats read (one file may mix prefixes, e.g. a denoiser and its text encoders):

- diffusers / peft: `<prefix>.<module>.lora_A.weight` / `.lora_B.weight` (prefix `unet`, `transformer`,
  `text_encoder`, `text_encoder_2`...; peft's own saves under `base_model.model.`), alphas from the
  `lora_adapter_metadata` that diffusers writes into the safetensors header (`<prefix>.lora_alpha`,
  `alpha_pattern`, `use_rslora`) or from `<module>.alpha` keys; without either the scale is 1. Older
  diffusers layouts (`.lora.down/.up`, `lora_linear_layer`, `processor.to_q_lora`) too.
- kohya / A1111 (sd-scripts, ComfyUI): `lora_unet_<module_with_underscores>.lora_down.weight` /
  `.lora_up.weight` / `.alpha` (scale alpha / rank), `lora_te1_` / `lora_te2_` / `lora_te3_` for text
  encoders; ComfyUI's `diffusion_model.` and `text_encoders.clip_l.transformer.` prefixes.
- BFL (official FLUX layout names with `lora_A` / `lora_B`) and XLabs (`double_blocks.N.processor.qkv_lora1
  .down.weight`; no alpha: scale 1): their module names are resolved by the model's aliases.

Variants that are not a plain low-rank pair (DoRA, LoHa, LoKr, LyCORIS' `lora_mid`, full `diff` weights)
are refused in one line rather than loaded wrongly.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from utils.errors import UserError, WeightsError

METADATA_KEY = "lora_adapter_metadata"
"""The safetensors header entry in which diffusers keeps each component's LoraConfig (prefixed keys)."""

# (suffix of a key, which matrix): the first that ends a key decides its module path
_SUFFIXES = (
    (re.compile(r"\.lora_A(?:\.[A-Za-z0-9_]+)?\.weight$"), "down", "peft"),
    (re.compile(r"\.lora_B(?:\.[A-Za-z0-9_]+)?\.weight$"), "up", "peft"),
    (re.compile(r"\.lora_down\.weight$"), "down", "kohya"),
    (re.compile(r"\.lora_up\.weight$"), "up", "kohya"),
    (re.compile(r"\.lora(?:_linear_layer)?\.down\.weight$"), "down", "diffusers-old"),
    (re.compile(r"\.lora(?:_linear_layer)?\.up\.weight$"), "up", "diffusers-old"),
    (re.compile(r"\.down\.weight$"), "down", "processor"),
    (re.compile(r"\.up\.weight$"), "up", "processor"),
    (re.compile(r"\.alpha$"), "alpha", None),
)
_UNSUPPORTED = (("dora_scale", "DoRA"), ("lora_magnitude_vector", "DoRA"), ("hada_", "LoHa"), ("lokr_", "LoKr"),
                ("lora_mid", "LyCORIS LoCon (lora_mid)"), (".diff_b", "a full bias difference (diff_b)"),
                (".diff", "a full weight difference (diff)"), (".lora_B.bias", "LoRA biases (lora_B.bias)"))
# diffusers' attention-processor names -> the module they adapt
_PROCESSOR_NAMES = {"processor.to_q_lora": "to_q", "processor.to_k_lora": "to_k", "processor.to_v_lora": "to_v",
                    "processor.to_out_lora": "to_out.0"}


@dataclass
class LoraPair:
    """One low-rank update as the file stores it: delta W = scale * up @ down."""

    path: str
    """The module path in the file, prefix included ('transformer.transformer_blocks.0.attn.to_q')."""
    down: torch.Tensor
    """(rank, in) or (rank, in, kh, kw)."""
    up: torch.Tensor
    """(out, rank) or (out, rank, 1, 1)."""
    scale: float
    """alpha / rank (alpha / sqrt(rank) with rsLoRA); 1 when the file gives no alpha."""
    style: str
    """'peft', 'kohya', 'diffusers-old' or 'processor' (XLabs, diffusers' attention processors)."""

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])


def read_lora_file(source: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, diffusers metadata) of a LoRA file, a folder holding one, or a hub repo (its one
    `*.safetensors`, or `pytorch_lora_weights.safetensors`); `source` may be 'repo/id:file.safetensors'."""
    from utils.weights import load_state_dict
    from utils.weights.hub import locate

    text = str(source)
    filename = None
    local = Path(os.path.expanduser(text))
    if not local.exists() and ":" in text and not re.match(r"^[A-Za-z]:[\\/]", text):
        text, _, filename = text.partition(":")
    path = locate(text, filename=filename, what=f"LoRA '{source}'") if filename else (
        local if local.exists() else locate(text, patterns=["*.safetensors"], what=f"LoRA '{source}'"))
    if path.is_dir():
        found = sorted(path.glob("*.safetensors"))
        named = [p for p in found if p.name == "pytorch_lora_weights.safetensors"]
        if named:
            found = named
        if len(found) != 1:
            what = "no" if not found else f"{len(found)}"
            raise UserError(f"{path} holds {what} .safetensors files: pass the LoRA file itself "
                            f"({', '.join(p.name for p in found[:4])})" if found else
                            f"{path} holds no .safetensors LoRA file: pass the file itself")
        path = found[0]
    tensors = load_state_dict(path)
    metadata: dict[str, Any] = {}
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
        if raw:
            try:
                metadata = json.loads(raw)
            except json.JSONDecodeError:
                raise WeightsError(f"{path.name} has a broken {METADATA_KEY} header (not JSON): the file was "
                                   "written incompletely; save it again") from None
    return tensors, metadata


def check_supported(keys: list[str], where: str) -> None:
    for marker, what in _UNSUPPORTED:
        hit = next((k for k in keys if marker in k), None)
        if hit is not None:
            raise UserError(f"{where} is {what}, not a plain LoRA (key {hit}): this zoo loads low-rank pairs "
                            "(lora_A/lora_B, lora_down/lora_up); convert the file to a plain LoRA first")


def split_pairs(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None,
                where: str = "the LoRA file") -> list[LoraPair]:
    """The low-rank pairs of a file, each with its scale; a key that fits no pair is a UserError."""
    keys = list(tensors)
    check_supported(keys, where)
    downs: dict[str, tuple[torch.Tensor, str]] = {}
    ups: dict[str, torch.Tensor] = {}
    alphas: dict[str, float] = {}
    stray: list[str] = []
    for key, value in tensors.items():
        for pattern, kind, style in _SUFFIXES:
            m = pattern.search(key)
            if m is None:
                continue
            path = key[:m.start()]
            if kind == "alpha":
                alphas[path] = float(value.float().item()) if value.numel() == 1 else float("nan")
            elif kind == "down":
                downs[path] = (value, style)
            else:
                ups[path] = value
            break
        else:
            stray.append(key)
    if stray:
        raise UserError(f"{where} has keys that are not LoRA matrices ({', '.join(stray[:3])}"
                        f"{' ...' if len(stray) > 3 else ''}): it is not a LoRA file, or a kind this zoo cannot load")
    lonely = sorted(set(downs) ^ set(ups))
    if lonely:
        raise UserError(f"{where} is incomplete: {lonely[0]} has only one of its two LoRA matrices")
    pairs = []
    for path, (down, style) in downs.items():
        up = ups[path]
        rank = int(down.shape[0])
        if up.shape[1] != rank:
            raise UserError(f"{where}: the LoRA matrices of {path} disagree on the rank ({rank} vs {up.shape[1]})")
        scale = _scale(path, rank, alphas, metadata or {}, style)
        pairs.append(LoraPair(_normalise(path), down, up, scale, style))
    return pairs


def _scale(path: str, rank: int, alphas: Mapping[str, float], metadata: Mapping[str, Any], style: str) -> float:
    if path in alphas:
        if math.isnan(alphas[path]):
            raise UserError(f"the alpha of {path} is not a single number: the file is malformed")
        return alphas[path] / rank
    if style == "peft" and metadata:
        prefix, _, module = path.partition(".")
        if f"{prefix}.lora_alpha" not in metadata:  # a bare peft save: unprefixed keys
            prefix, module = "", path
        get = (lambda k: metadata.get(f"{prefix}.{k}")) if prefix else metadata.get
        alpha = get("lora_alpha")
        for pattern, value in (get("alpha_pattern") or {}).items():
            if re.fullmatch(rf"(.*\.)?({pattern})", module):
                alpha = value
                break
        if alpha is not None:
            return float(alpha) / (math.sqrt(rank) if get("use_rslora") else rank)
    return 1.0


def _normalise(path: str) -> str:
    for old, new in _PROCESSOR_NAMES.items():
        if path.endswith(old):
            return path[: -len(old)] + new
    return path


# -- writing ----------------------------------------------------------------------------------------------


def kohya_tensors(name: str, down: torch.Tensor, up: torch.Tensor, alpha: float) -> dict[str, torch.Tensor]:
    """The three kohya entries of one module (`name` already underscored and prefixed)."""
    return {f"{name}.lora_down.weight": down.contiguous(), f"{name}.lora_up.weight": up.contiguous(),
            f"{name}.alpha": torch.tensor(float(alpha))}


def peft_tensors(name: str, down: torch.Tensor, up: torch.Tensor) -> dict[str, torch.Tensor]:
    return {f"{name}.lora_A.weight": down.contiguous(), f"{name}.lora_B.weight": up.contiguous()}


def write_lora_file(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                    metadata: Mapping[str, Any] | None = None, extra: Mapping[str, str] | None = None) -> Path:
    """A safetensors LoRA file, written atomically; `metadata` becomes diffusers' lora_adapter_metadata."""
    from safetensors.torch import save_file

    from utils.io import atomic_path

    header = {"format": "pt", **(extra or {})}
    if metadata:
        header[METADATA_KEY] = json.dumps(metadata, indent=2, sort_keys=True)
    path = Path(path)
    with atomic_path(path) as tmp:
        # a fused layer's pieces share their A: each name gets its own storage (safetensors refuses shared ones)
        save_file({k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}, str(tmp), metadata=header)
    return path


__all__ = ["LoraPair", "METADATA_KEY", "check_supported", "kohya_tensors", "peft_tensors", "read_lora_file",
           "split_pairs", "write_lora_file"]

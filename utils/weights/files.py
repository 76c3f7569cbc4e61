"""Reading checkpoint files safely: safetensors first, `torch.load(weights_only=True)`, the restricted
unpickler for legacy files."""
from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from utils.errors import WeightsError, short_reason
from utils.weights.pickles import PickledObject, load_legacy_pickle, load_torch_zip_restricted

SAFETENSORS = (".safetensors",)
TORCH_FILES = (".bin", ".pt", ".pth", ".ckpt")
PICKLE_FILES = (".pkl", ".pickle")
CHECKPOINT_SUFFIXES = SAFETENSORS + TORCH_FILES + PICKLE_FILES

def load_state_dict(path: str | os.PathLike, device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None, unwrap: bool = True) -> dict[str, torch.Tensor]:
    """The tensors of one checkpoint file (or a sharded diffusers folder) as a flat dict.

    Floating tensors are cast to `dtype` when given. With `unwrap`, the usual wrappers
    ({'state_dict': ...}, {'model': ...}, {'module': ...}) are taken off.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"checkpoint not found: {path}: check the path")
    if path.is_dir():
        return load_folder_state_dict(path, device=device, dtype=dtype)
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS:
        sd = _load_safetensors(path, device)
    elif suffix in TORCH_FILES:
        sd = _torch_load(path, device, restricted_fallback=suffix == ".ckpt")
    elif suffix in PICKLE_FILES:
        sd = load_legacy_pickle(path)  # unwrapped below, before flattening, so wrapper names do not prefix keys
    else:
        raise WeightsError(f"{path.name} is not a checkpoint: expected one of {', '.join(CHECKPOINT_SUFFIXES)}")
    if unwrap:
        sd = unwrap_state_dict(sd)
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        sd = flatten_tensors(sd)
    if not sd:
        raise WeightsError(f"{path.name} holds no tensors: it is not a model checkpoint")
    return cast_state_dict(dict(sd), dtype)


def _load_safetensors(path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError) as err:
        raise WeightsError(f"{path.name} is not a readable safetensors file ({short_reason(err)}): it is truncated or "
                           "corrupt; download it again") from None


def _torch_load(path: Path, device: str | torch.device, restricted_fallback: bool = False) -> Any:
    """torch.load(weights_only=True); with `restricted_fallback`, a file that it refuses for naming a
    class (old Lightning .ckpt files carry callback objects) is read by the restricted unpickler."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = weights_only_reason(err)
        if restricted_fallback and reason.startswith("unsupported global") and zipfile.is_zipfile(path):
            return load_torch_zip_restricted(path, device)
        # Every weights_only failure mentions weights_only; only a refused global names "GLOBAL".
        # Anything else (e.g. "Unsupported operand") means the bytes are not a torch pickle at all.
        if reason.startswith("unsupported global"):
            raise WeightsError(f"{path.name} contains Python objects that a safe load refuses "
                               f"({reason}): convert it to safetensors with its original code, or use a "
                               "trusted copy in safetensors format") from None
        raise WeightsError(f"{path.name} is not a readable torch checkpoint ({reason}): it is truncated, "
                           "corrupt or not a checkpoint; download it again") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise WeightsError(f"{path.name} is not a readable torch checkpoint ({short_reason(err)}): it is truncated "
                           "or corrupt; download it again") from None


def weights_only_reason(err: BaseException) -> str:
    """The informative part of torch's long weights_only message (the rest is boilerplate), on one line."""
    msg = str(err)
    refused = re.search(r"GLOBAL ([\w.]+)", msg)
    if refused:
        return f"unsupported global {refused.group(1)}"
    if "WeightsUnpickler error:" in msg:
        msg = msg.split("WeightsUnpickler error:", 1)[1]
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    useful = [p.strip() for p in msg.split("\n\n") if p.strip() and not p.strip().startswith(boilerplate)]
    return short_reason(useful[0] if useful else (msg if not msg.startswith(boilerplate) else type(err).__name__))




def load_folder_state_dict(folder: str | os.PathLike, name: str = "diffusion_pytorch_model",
                           device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """A diffusers/transformers component folder: one file, or shards listed in an index json."""
    folder = Path(folder)
    candidates = [f"{name}.safetensors", f"{name}.safetensors.index.json", "model.safetensors",
                  "model.safetensors.index.json", f"{name}.bin", "pytorch_model.bin",
                  "pytorch_model.bin.index.json"]
    for cand in candidates:
        p = folder / cand
        if not p.exists():
            continue
        if p.name.endswith(".index.json"):
            shards = sorted(set(json.loads(p.read_text())["weight_map"].values()))
            sd: dict[str, torch.Tensor] = {}
            for shard in shards:
                sd.update(load_state_dict(folder / shard, device=device, dtype=dtype, unwrap=False))
            return sd
        return load_state_dict(p, device=device, dtype=dtype, unwrap=False)
    raise WeightsError(f"no weights file in {folder}: expected {name}.safetensors or model.safetensors "
                       "(or a sharded index)")


def cast_state_dict(sd: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Cast floating tensors (fp8 included) to `dtype`; integer buffers stay as they are."""
    if dtype is None:
        return sd
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}


def unwrap_state_dict(obj: Any, keys: tuple[str, ...] = ("state_dict", "model", "module", "params")) -> Any:
    """Take off the dicts that trainers wrap a state dict in."""
    while isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in keys if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            break
        obj = inner
    return obj


def flatten_tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a nest of dicts, lists and unpickled records, keyed by its dotted path."""
    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(flatten_tensors(v, f"{prefix}{k}."))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flatten_tensors(v, f"{prefix}{i}."))
    elif isinstance(obj, PickledObject):
        out.update(flatten_tensors(obj.state, prefix))
    return out

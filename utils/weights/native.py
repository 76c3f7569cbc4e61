"""The zoo's native checkpoint format: safetensors with the config json in its metadata."""
from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from utils.io import atomic_path

def config_to_json(config: Any) -> str:
    return json.dumps(asdict(config), sort_keys=True)


def config_from_json(cls: type, text: str) -> Any:
    data = json.loads(text)
    names = {f.name for f in fields(cls)}
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    return cls(**data)


def read_safetensors_config(path: Path, cls: type) -> Any | None:
    """The config stored in a native safetensors file's metadata, if any."""
    if path.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return config_from_json(cls, meta["config"]) if "config" in meta else None


def save_native(path: str | Path, state_dict: dict[str, torch.Tensor], config: Any) -> Path:
    """Write a native checkpoint: safetensors with the config json in its metadata."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, str(tmp),
                  metadata={"config": config_to_json(config), "format": "cv-generative"})
    return Path(path)

"""Atomic training checkpoints that load with `torch.load(weights_only=True)`, and their folder rules."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from utils.errors import UserError
from utils.io import atomic_path

CKPT_PATTERN = re.compile(r"^step_(\d+)\.pt$")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` (tensors, state dicts, numbers, strings) atomically with torch.save.

    Only types that `torch.load(weights_only=True)` accepts go in, so a checkpoint can be read
    back safely.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}: check the path, or start without --resume")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to read is the same user-facing problem
        raise UserError(f"cannot read checkpoint {path} ({' '.join(str(err).split())[:120]}): it is corrupt "
                        "or not a training checkpoint") from None


def checkpoint_path(ckpt_dir: str | os.PathLike, step: int) -> Path:
    return Path(ckpt_dir) / f"step_{step:07d}.pt"


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in `ckpt_dir` (temporary files are ignored)."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := CKPT_PATTERN.match(p.name))]
    return max(found)[1] if found else None


def prune_checkpoints(ckpt_dir: str | os.PathLike, keep: int) -> None:
    """Keep the `keep` newest checkpoints."""
    if keep <= 0:
        return
    found = sorted((int(m.group(1)), p) for p in Path(ckpt_dir).iterdir() if (m := CKPT_PATTERN.match(p.name)))
    for _, p in found[:-keep]:
        p.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    return Path(path)

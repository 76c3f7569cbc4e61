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


class CheckpointState(dict):
    """A loaded checkpoint: a dict whose missing entry is a UserError naming the file (another model's or
    trainer's checkpoint passed to --resume), not a KeyError."""

    path: Path = Path("checkpoint")

    def __missing__(self, key: Any) -> Any:
        raise UserError(f"{self.path} is not a training checkpoint of this trainer (it has no '{key}'): pass a "
                        "step_*.pt file that its run wrote, or start without --resume")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A checkpoint written by `save_checkpoint`, read with weights_only; a missing, corrupt or foreign file
    (not a dict, or without the `required` entries, or later without an entry a trainer reads) is a
    one-line UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}: check the path, or start without --resume")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a checkpoint: pass a step_*.pt file, or 'auto'")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to read is the same user-facing problem
        from utils.weights.files import weights_only_reason

        reason = weights_only_reason(err)
        if reason.startswith("unsupported global"):
            raise UserError(f"cannot read checkpoint {path}: it holds Python objects that a safe load refuses "
                            f"({reason}): it is not a checkpoint of this repository; use one that is") from None
        raise UserError(f"cannot read checkpoint {path} ({reason}): it is corrupt, truncated or not a training "
                        "checkpoint") from None
    missing = [k for k in required if k not in state] if isinstance(state, dict) else list(required)
    if missing or not isinstance(state, dict):
        what = ", ".join(f"'{k}'" for k in missing) or "entries"
        raise UserError(f"{path} is not a training checkpoint of this trainer (it has no {what}): pass a step_*.pt "
                        "file that its run wrote, or start without --resume")
    state = CheckpointState(state)
    state.path = path
    return state


def checkpoint_path(ckpt_dir: str | os.PathLike, step: int) -> Path:
    return Path(ckpt_dir) / f"step_{step:07d}.pt"


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in `ckpt_dir` (temporary files are ignored)."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := CKPT_PATTERN.match(p.name))]
    return max(found)[1] if found else None


def prune_checkpoints(ckpt_dir: str | os.PathLike, keep: int, newest: int | None = None) -> list[Path]:
    """Keep the `keep` newest checkpoints of the run whose latest checkpoint is step `newest`.

    Only checkpoints up to step `newest` are the run's own: one with a higher step belongs to another
    run (or to a future this run, resumed from an earlier step, replaced) and is never deleted here.
    `keep` 0 keeps everything. Returns the deleted files.
    """
    if keep <= 0 or not Path(ckpt_dir).is_dir():
        return []
    found = sorted((int(m.group(1)), p) for p in Path(ckpt_dir).iterdir() if (m := CKPT_PATTERN.match(p.name)))
    if newest is not None:
        found = [(step, p) for step, p in found if step <= newest]
    removed = [p for _, p in found[:-keep]]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """`obj` as indented JSON, written atomically (metrics.json, settings.json)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    return Path(path)

"""What every trainer shares: atomic checkpoints, exact resume, per-step seeding, logging."""
from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
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


def seed_step(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """Seed every global RNG from (seed, step, rank) and return a CPU generator for the step.

    Randomness that is a pure function of the step makes resume exact without saving RNG state.
    """
    s = (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63 - 1)
    random.seed(s)
    np.random.seed(s % (2**32))
    torch.manual_seed(s)
    gen = torch.Generator("cpu")
    gen.manual_seed(s)
    return gen


def capture_rng() -> dict[str, Any]:
    """torch CPU/CUDA RNG states as tensors (weights_only-safe), for trainers that need them."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def epoch_indices(n: int, batch_size: int, step: int, seed: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """The dataset indices of `step`'s batch for this rank: a seeded permutation per epoch.

    Batches never straddle epochs (the tail of a permutation is dropped), so the batch of any
    step is known without replaying the ones before it.
    """
    per_epoch = max(1, n // (batch_size * world))
    epoch, i = divmod(step, per_epoch)
    gen = torch.Generator("cpu")
    gen.manual_seed(seed * 7_777_777 + epoch)
    perm = torch.randperm(n, generator=gen)
    start = (i * world + rank) * batch_size
    return perm[start:start + batch_size]


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    return Path(path)

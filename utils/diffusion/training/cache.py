"""Caching VAE posteriors and text features to disk, so each image and caption is encoded once per run
configuration instead of once per step.

Entries are safetensors files named by a hash of what determines them: a latent entry by the model
(`namespace`: model, preset, weights), the image's key and its bucket size (caching needs a deterministic
crop: centre crops, no flips); a text entry by the model and the prompt. The posterior (mean and log-variance)
is stored, not a sample, so every step still draws its own latent with the step's generator. Writes are
atomic, so a killed run leaves no half entry; a second run with the same configuration reuses them.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from utils.errors import UserError


def _digest(*parts: object) -> str:
    return hashlib.sha1("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()


class DiskCache:
    """A folder of safetensors entries for one model configuration (`namespace`)."""

    def __init__(self, folder: str | os.PathLike, namespace: str, kind: str):
        self.folder = Path(folder) / kind / _digest(namespace)[:16]
        self.kind = kind

    def path(self, *key: object) -> Path:
        return self.folder / f"{_digest(*key)}.safetensors"

    def get(self, *key: object) -> dict[str, torch.Tensor] | None:
        from safetensors.torch import load_file

        p = self.path(*key)
        if not p.exists():
            return None
        try:
            return load_file(str(p))
        except Exception:  # noqa: BLE001 - a broken entry is recomputed
            return None

    def put(self, tensors: dict[str, torch.Tensor], *key: object) -> None:
        from safetensors.torch import save_file

        from utils.io import atomic_path

        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path(*key)) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))

    def fill(self, keys: Sequence[tuple], compute: Callable[[list[tuple]], list[dict[str, torch.Tensor]]],
             batch: int = 8, progress: bool = False) -> int:
        """Compute and store the entries of `keys` that are missing (in batches); returns how many were made."""
        from tqdm.auto import tqdm

        todo = [k for k in dict.fromkeys(keys) if not self.path(*k).exists()]
        for i in tqdm(range(0, len(todo), batch), desc=f"caching {self.kind}", disable=not progress or not todo):
            chunk = todo[i:i + batch]
            for key, tensors in zip(chunk, compute(chunk)):
                self.put(tensors, *key)
        return len(todo)

    def load_many(self, keys: Iterable[tuple]) -> list[dict[str, torch.Tensor]]:
        out = []
        for key in keys:
            found = self.get(*key)
            if found is None:
                raise UserError(f"the {self.kind} cache in {self.folder} lacks an entry (it was deleted during the "
                                "run): run again to rebuild it")
            out.append(found)
        return out


def stack_entries(entries: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([e[k] for e in entries]) for k in entries[0]}


__all__ = ["DiskCache", "stack_entries"]

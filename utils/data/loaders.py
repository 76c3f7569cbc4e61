"""DataLoaders whose order (and worker randomness) is fixed by a seed."""
from __future__ import annotations

import random
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of item dicts: tensors stacked, ints to a tensor, everything else as a list.

    Unlike torch's default collate this accepts None (an image without a caption or label):
    such a field becomes a list holding None where the value is missing.
    """
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [item[key] for item in batch]
        if all(isinstance(v, torch.Tensor) for v in values):
            out[key] = torch.stack(values)
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            out[key] = torch.tensor(values, dtype=torch.long)
        else:
            out[key] = values
    return out


def seed_worker(worker_id: int) -> None:
    """Seed Python's and NumPy's RNGs in a worker from the seed torch gave it (torch's own is set)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # numpy is optional here
        pass


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = True, seed: int = 0, num_workers: int = 0,
                drop_last: bool = False) -> DataLoader:
    """A DataLoader whose shuffle order, and the RNG seeds of its workers, follow `seed`.

    Each new iteration (epoch) draws a new order from the same seeded generator, so a run with
    the same seed sees the same sequence of epochs. With num_workers=0 random augmentations
    draw from torch's global RNG, which the training script seeds.
    """
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      num_workers=num_workers, drop_last=drop_last, collate_fn=collate,
                      worker_init_fn=seed_worker if num_workers > 0 else None,
                      persistent_workers=num_workers > 0)

"""x-flip dataset augmentation (NVlabs' --mirror): the training set doubled with mirrored copies."""
from __future__ import annotations

from typing import Any

import torch


class MirroredDataset(torch.utils.data.Dataset):
    """Items 0..n-1 are the dataset's, n..2n-1 the same images flipped left-right (labels kept)."""

    def __init__(self, dataset: Any):
        self.dataset = dataset
        self.num_classes = getattr(dataset, "num_classes", None)

    def __len__(self) -> int:
        return 2 * len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        n = len(self.dataset)
        item = self.dataset[index % n]
        if index < n:
            return item
        if isinstance(item, dict):
            return {k: v.flip(-1) if isinstance(v, torch.Tensor) and v.ndim == 3 else v for k, v in item.items()}
        return item.flip(-1)

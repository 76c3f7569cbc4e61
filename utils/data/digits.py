"""The scikit-learn handwritten digits (1797 images, 8x8, ships inside scikit-learn: no download)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from utils.errors import UserError

SPLITS = ("train", "test", "all")


def digits_tensor(size: int = 32, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """All images of a split as (N, 1, size, size) in [-1, 1], and their labels (N,).

    Every fifth image (index % 5 == 4) is held out as the test split.
    """
    if split not in SPLITS:
        raise UserError(f"unknown digits split '{split}': use one of {', '.join(SPLITS)}")
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    labels = torch.tensor(data.target, dtype=torch.long)
    if split != "all":
        keep = (torch.arange(len(labels)) % 5 == 4) == (split == "test")
        images, labels = images[keep], labels[keep]
    if size != 8:
        # bilinear upsampling of the 8x8 originals keeps the strokes smooth at 16/32/64 px
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return images * 2 - 1, labels


class DigitsDataset(Dataset):
    """Items are {"image": (1, size, size) in [-1, 1], "label": int}; 10 classes."""

    num_classes = 10
    channels = 1

    def __init__(self, size: int = 32, split: str = "train"):
        self.size = size
        self.images, self.labels = digits_tensor(size, split)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": int(self.labels[i])}

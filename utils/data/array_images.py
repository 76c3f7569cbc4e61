"""A dataset over images already in memory as one uint8 array (MNIST's idx files, CIFAR-10's batches)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from utils.data.augmentations import ImageTransform, Size


class ArrayImageDataset(Dataset):
    """Items are {"image": (C, H, W) in [-1, 1], "label": int}; `images` is (N, H, W) or (N, H, W, C) uint8.

    With `size`, each image is resized to cover it and center-cropped (as an image folder is)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: list[str], size: Size | None = None,
                 random_flip: bool = False):
        self.images, self.labels, self.classes = images, labels.astype(np.int64), list(classes)
        self.channels = 1 if images.ndim == 3 else int(images.shape[-1])
        self.transform = ImageTransform(size=size, random_flip=random_flip)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> dict:
        img = Image.fromarray(np.ascontiguousarray(self.images[i]), mode="L" if self.channels == 1 else "RGB")
        return {"image": self.transform(img), "label": int(self.labels[i])}

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every image (N, C, H, W) in [-1, 1] and every label, at the native size."""
        x = torch.from_numpy(np.ascontiguousarray(self.images)).float() / 127.5 - 1
        x = x[:, None] if self.channels == 1 else x.permute(0, 3, 1, 2)
        return x, torch.from_numpy(self.labels)

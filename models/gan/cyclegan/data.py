"""Unpaired two-domain data: the original's trainA/trainB (testA/testB) folders, or a built-in set.

Items are {"image": an A image, "image_b": a B image}, in [-1, 1]. The two domains are not aligned:
the B image of item i is a fixed pseudo-random pick, and the training loop shuffles items.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from utils.errors import UserError

BUILTIN = "digits-ink"
"""The built-in unpaired set: A = the scikit-learn digits, white on black; B = other digits drawn in dark
blue ink on cream paper. Made by this code from data that ships with scikit-learn: no download."""

PAPER = torch.tensor([0.96, 0.92, 0.80])  # cream
INK = torch.tensor([0.10, 0.15, 0.55])  # dark blue


def ink_on_paper(gray: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) strokes in [-1, 1] (white on black) -> (N, 3, H, W) ink on paper in [-1, 1]."""
    t = (gray + 1) / 2
    rgb = PAPER.view(1, 3, 1, 1) * (1 - t) + INK.view(1, 3, 1, 1) * t
    return rgb * 2 - 1


def digits_domains(size: int, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """A and B image tensors of the built-in set, from disjoint halves of the digits (so never paired)."""
    from utils.data.digits import digits_tensor

    images, _ = digits_tensor(size, split)
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    half = len(idx) // 2
    a = images[idx[:half]].expand(-1, 3, -1, -1).contiguous()
    b = ink_on_paper(images[idx[half:]])
    return a, b


class UnpairedDataset(Dataset):
    """Two image sets of any sizes; len is the larger one, like the original's unaligned dataset."""

    def __init__(self, a, b, transform=None):
        self.a, self.b, self.transform = a, b, transform
        if len(a) == 0 or len(b) == 0:
            raise UserError("an unpaired dataset needs images in both domains (trainA and trainB)")
        n = max(len(a), len(b))
        self.b_index = torch.randperm(n, generator=torch.Generator().manual_seed(1)) % len(b)

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def _get(self, items, i: int) -> torch.Tensor:
        x = items[i]
        return self.transform(x) if self.transform is not None else x

    def __getitem__(self, i: int) -> dict:
        return {"image": self._get(self.a, i % len(self.a)), "image_b": self._get(self.b, int(self.b_index[i]))}


def unpaired_dataset(name: str, size: int, split: str = "train", augment: bool = True) -> UnpairedDataset:
    """The built-in set by name, or a folder with <split>A and <split>B subfolders."""
    if name in (BUILTIN, "digits"):
        a, b = digits_domains(size, "train" if split == "train" else "test")
        return UnpairedDataset(a, b)
    root = Path(name)
    if not root.is_dir():
        raise UserError(f"dataset not found: {name}: pass '{BUILTIN}' (built in) or a folder holding "
                        f"{split}A/ and {split}B/")
    from utils.data.image_folder import find_images

    dirs = [root / f"{split}A", root / f"{split}B"]
    missing = [d.name for d in dirs if not d.is_dir()]
    if missing:
        raise UserError(f"{root} has no {' or '.join(missing)} folder: an unpaired dataset holds {split}A/ "
                        f"(domain A) and {split}B/ (domain B)")
    transform = FolderTransform(size, train=augment and split == "train")
    return UnpairedDataset(find_images(dirs[0]), find_images(dirs[1]), transform)


class FolderTransform:
    """The original's 'resize_and_crop': resize to 286/256 of the crop, random crop, random flip (train);
    resize to the crop size (test). Randomness from torch's global RNG, which train_gan seeds per step."""

    def __init__(self, size: int, train: bool = True):
        self.size, self.train = size, train

    def __call__(self, path: Path) -> torch.Tensor:
        from PIL import Image

        from utils.data.augmentations import hflip, random_crop, to_tensor
        from utils.data.image_folder import load_rgb

        img = load_rgb(path)
        if not self.train:
            return to_tensor(img.resize((self.size, self.size), Image.Resampling.BICUBIC))
        load = self.size * 286 // 256
        img = random_crop(img.resize((load, load), Image.Resampling.BICUBIC), self.size)
        if float(torch.rand(())) < 0.5:
            img = hflip(img)
        return to_tensor(img)

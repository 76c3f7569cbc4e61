"""Image transforms for training data: resize, center/random crop, horizontal flip, to tensor.

Written with PIL and torch only (no torchvision at runtime). Random choices draw from the
`generator` given, else from torch's global RNG, which DataLoader seeds in each worker.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

Size = int | tuple[int, int]


def as_hw(size: Size) -> tuple[int, int]:
    """An int is a square side; a pair is (height, width)."""
    h, w = (size, size) if isinstance(size, int) else size
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {size}")
    return int(h), int(w)


def resize_to_cover(img: Image.Image, size: Size) -> Image.Image:
    """Scale (keeping the aspect ratio) so the image just covers `size`; a crop then trims it."""
    h, w = as_hw(size)
    scale = max(h / img.height, w / img.width)
    new = (max(w, round(img.width * scale)), max(h, round(img.height * scale)))
    if new == img.size:
        return img
    # Lanczos keeps detail when shrinking, bicubic is as good and cheaper when enlarging.
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
    return img.resize(new, resample=resample)


def center_crop(img: Image.Image, size: Size) -> Image.Image:
    h, w = as_hw(size)
    left, top = (img.width - w) // 2, (img.height - h) // 2
    return img.crop((left, top, left + w, top + h))


def random_crop(img: Image.Image, size: Size, generator: torch.Generator | None = None) -> Image.Image:
    h, w = as_hw(size)
    left = int(torch.randint(0, img.width - w + 1, (1,), generator=generator))
    top = int(torch.randint(0, img.height - h + 1, (1,), generator=generator))
    return img.crop((left, top, left + w, top + h))


def hflip(img: Image.Image) -> Image.Image:
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB (or L) PIL image as a float32 tensor C x H x W in [-1, 1]."""
    channels = len(img.getbands())
    data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    x = data.view(img.height, img.width, channels).permute(2, 0, 1).float()
    return x / 127.5 - 1.0


@dataclass(frozen=True)
class ImageTransform:
    """Resize to cover `size`, crop to it (center or random), maybe flip, then to [-1, 1].

    With `size=None` the image keeps its own size (only flipped and converted).
    """

    size: Size | None = None
    center_crop: bool = True
    random_flip: bool = False

    def __call__(self, img: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.size is not None:
            img = resize_to_cover(img, self.size)
            img = center_crop(img, self.size) if self.center_crop else random_crop(img, self.size, generator)
        if self.random_flip and bool(torch.rand((), generator=generator) < 0.5):
            img = hflip(img)
        return to_tensor(img)

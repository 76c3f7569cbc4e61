"""Captioned images for text-to-image training: a folder (the Hugging Face imagefolder convention) or the
built-in captioned shapes, bucketed by aspect ratio, with the crop coordinates SDXL conditions on.

Captions come from `metadata.jsonl` (`file_name` + `text` / `caption` / `prompt`, or `caption_column`) or
`.txt` sidecars (`utils.data.image_folder`). Images without a caption are kept and trained with the empty
caption (as unconditional examples), with one warning that counts them; a file that does not decode is
skipped with a count (both decided and documented in docs/training.md).

An item is asked for as (index, seed): the seed drives the random crop and flip, so every item of every
step is a pure function of the run's seed and the step (exact resume, any number of data workers).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from typing import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from utils.data.augmentations import hflip, resize_to_cover, to_tensor
from utils.data.buckets import nearest_bucket
from utils.errors import UserError, warn_user


@dataclass(frozen=True)
class Source:
    """One training image before any transform."""

    key: str
    """A stable name (the file path, or the built-in item's id): the key of its cache entries."""
    size: tuple[int, int]
    """(height, width) of the image as stored (upright)."""
    caption: str | None
    """Its caption; None when the data has none."""
    load: Callable[[], Image.Image]
    """Reads the image as RGB."""


def folder_sources(root: str | os.PathLike, caption_column: str | None = None, captions: bool = True) -> list[Source]:
    """Every readable image under `root` with its caption; unreadable files are skipped with one warning,
    images without a caption are counted in one warning (they train with the empty caption). With
    `captions=False` (DreamBooth's images, which all get one prompt) no caption is read or warned about."""
    from functools import partial

    from utils.data.image_folder import ImageFolderDataset, load_rgb

    folder = ImageFolderDataset(root, captions=captions, caption_column=caption_column)  # verifies every file
    sources = []
    for path, caption in zip(folder.paths, folder.captions):
        with Image.open(path) as img:
            w, h = img.size
            if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF rotations by 90 degrees swap the sides
                w, h = h, w
        sources.append(Source(str(path), (h, w), caption, partial(load_rgb, path)))
    missing = sum(s.caption is None for s in sources)
    if not captions:
        pass
    elif missing == len(sources):
        warn_user(f"none of the {len(sources)} images in {folder.root} has a caption (no metadata.jsonl, no .txt "
                  "sidecars): training unconditionally on the empty caption")
    elif missing:
        warn_user(f"{missing} of {len(sources)} images in {folder.root} have no caption and train with the empty "
                  "caption: add them to metadata.jsonl or give them .txt sidecars")
    return sources


def item_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) % (2 ** 63 - 1))


class CaptionedImages(Dataset):
    """Items {"pixels": (3, h, w) in [-1, 1], "caption": str, "original_size": (H, W), "crop_top_left":
    (top, left), "target_size": (h, w), "index": i, "key": str}; sizes are (height, width), the crop is in
    the resized image's pixels (what SDXL's micro-conditioning was trained on)."""

    def __init__(self, sources: Sequence[Source], buckets: Sequence[tuple[int, int]], center_crop: bool = True,
                 random_flip: bool = False):
        if not sources:
            raise UserError("the training data holds no images")
        self.sources, self.buckets = list(sources), list(buckets)
        self.center_crop, self.random_flip = center_crop, random_flip
        self.bucket_of = [nearest_bucket(*s.size, self.buckets) for s in self.sources]

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def deterministic(self) -> bool:
        """Items do not depend on their seed (what caching latents to disk needs)."""
        return self.center_crop and not self.random_flip

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        i, seed = (key, 0) if isinstance(key, int) else key
        src = self.sources[i]
        h, w = self.buckets[self.bucket_of[i]]
        gen = item_generator(seed)
        img = src.load()
        original = (img.height, img.width)
        img = resize_to_cover(img, (h, w))
        if self.center_crop:
            top, left = (img.height - h) // 2, (img.width - w) // 2
        else:
            top = int(torch.randint(0, img.height - h + 1, (1,), generator=gen))
            left = int(torch.randint(0, img.width - w + 1, (1,), generator=gen))
        resized_width = img.width
        img = img.crop((left, top, left + w, top + h))
        if self.random_flip and bool(torch.rand((), generator=gen) < 0.5):
            img = hflip(img)
            left = resized_width - left - w  # the crop's offset in the mirrored image
        return {"pixels": to_tensor(img), "caption": src.caption or "", "original_size": original,
                "crop_top_left": (top, left), "target_size": (h, w), "index": i, "key": src.key}


def collate_captioned(items: list[dict]) -> dict:
    """Stack pixels; sizes as (B, 2) tensors; captions, indices and keys as lists."""
    return {"pixels": torch.stack([it["pixels"] for it in items]),
            "caption": [it["caption"] for it in items],
            "original_size": torch.tensor([it["original_size"] for it in items], dtype=torch.float32),
            "crop_top_left": torch.tensor([it["crop_top_left"] for it in items], dtype=torch.float32),
            "target_size": torch.tensor([it["target_size"] for it in items], dtype=torch.float32),
            "index": [it["index"] for it in items], "key": [it["key"] for it in items]}


class StepBatchSampler(torch.utils.data.Sampler):
    """For global batches [start, stop): the (index, item seed) keys of this rank's batch."""

    def __init__(self, batches, seed: int, start: int, stop: int, rank: int = 0):
        self.batches, self.seed, self.start, self.stop, self.rank = batches, seed, start, stop, rank

    def __iter__(self):
        for g in range(self.start, self.stop):
            idx = self.batches.batch(g, self.rank)
            yield [(i, (self.seed * 7_368_787 + g * 1_299_709 + self.rank * 15_485_863 + j) % (2 ** 62))
                   for j, i in enumerate(idx)]

    def __len__(self) -> int:
        return self.stop - self.start


def prompt_sources(images: Sequence[Source], prompt: str) -> list[Source]:
    """The same images with every caption replaced by `prompt` (DreamBooth's instance or class prompt)."""
    return [Source(s.key, s.size, prompt, s.load) for s in images]


__all__ = ["CaptionedImages", "Source", "StepBatchSampler", "collate_captioned", "folder_sources", "item_generator",
           "prompt_sources"]

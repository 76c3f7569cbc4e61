"""Aspect-ratio bucketing: train on images of many shapes without squashing them, and batches that are
a pure function of (seed, batch number, rank), so a resumed run reads what the uninterrupted one did.

`make_buckets(resolution, multiple)` lists sizes (h, w), both multiples of `multiple`, of about
resolution^2 pixels, from 1:max_ratio to max_ratio:1 (the NovelAI / kohya scheme); each image goes to the
bucket nearest its aspect ratio (in log ratio), is resized to cover it and cropped to it. A batch holds
images of one bucket. `BucketBatches` orders an epoch: every bucket's images in a seeded order, cut into
full batches, the batches of all buckets in a seeded order; batch g of the run is computed directly.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from utils.errors import UserError, warn_user


def make_buckets(resolution: int, multiple: int, max_ratio: float = 2.0) -> list[tuple[int, int]]:
    """Bucket sizes (h, w) of at most resolution^2 pixels, sides multiples of `multiple`, ratio <= max_ratio."""
    if resolution < multiple or resolution % multiple:
        raise UserError(f"--resolution {resolution} must be a multiple of {multiple} (this model's pixel multiple)")
    area = resolution * resolution
    sizes = {(resolution, resolution)}
    w = multiple
    while w <= resolution * max_ratio:
        h = (area // w) // multiple * multiple
        if h >= multiple and max(h / w, w / h) <= max_ratio + 1e-9:
            sizes.add((h, w))
        w += multiple
    return sorted(sizes, key=lambda hw: hw[1] / hw[0])


def nearest_bucket(height: int, width: int, buckets: Sequence[tuple[int, int]]) -> int:
    """Index of the bucket whose aspect ratio is nearest the image's (in log ratio; ties: the larger area)."""
    r = math.log(width / height)
    return min(range(len(buckets)), key=lambda i: (abs(math.log(buckets[i][1] / buckets[i][0]) - r),
                                                   -buckets[i][0] * buckets[i][1]))


class BucketBatches:
    """The batches of a run over images assigned to buckets: batch g for rank r is a pure function of
    (seed, g, r). Batches of one epoch never mix buckets; a bucket's images that do not fill a batch in
    an epoch wait for a later epoch's order."""

    def __init__(self, bucket_of: Sequence[int], batch_size: int, seed: int, world: int = 1, what: str = "images"):
        self.bucket_of, self.batch_size, self.seed, self.world = list(bucket_of), batch_size, seed, world
        members: dict[int, list[int]] = {}
        for i, b in enumerate(self.bucket_of):
            members.setdefault(b, []).append(i)
        self.members = members
        self.per_epoch = sum(len(m) // batch_size for m in members.values())
        if self.per_epoch < world:
            sizes = ", ".join(str(len(m)) for m in members.values())
            raise UserError(f"no batch of {batch_size} can be formed for {world} process(es) from the {what} (bucket "
                            f"sizes {sizes}): lower --batch-size, add images, or pass --no-buckets")
        unused = sum(len(m) for m in members.values() if len(m) < batch_size)
        if unused:
            warn_user(f"{unused} of {len(self.bucket_of)} {what} sit in buckets smaller than a batch of {batch_size} "
                      "and are never used: lower --batch-size or pass --no-buckets")

    def epoch_order(self, epoch: int) -> list[list[int]]:
        cached = self.__dict__.get("_cached")
        if cached is not None and cached[0] == epoch:
            return cached[1]
        gen = torch.Generator().manual_seed(self.seed * 1_000_033 + epoch)
        batches = []
        for b in sorted(self.members):
            m = self.members[b]
            perm = [m[j] for j in torch.randperm(len(m), generator=gen).tolist()]
            batches += [perm[k:k + self.batch_size] for k in range(0, len(perm) - self.batch_size + 1, self.batch_size)]
        order = torch.randperm(len(batches), generator=gen).tolist()
        self._cached = (epoch, [batches[j] for j in order])
        return self._cached[1]

    def batch(self, g: int, rank: int = 0) -> list[int]:
        """The indices of global batch `g` (one per optimisation micro-step) for `rank`."""
        steps_per_epoch = self.per_epoch // self.world
        epoch, i = divmod(g, steps_per_epoch)
        return self.epoch_order(epoch)[i * self.world + rank]


__all__ = ["BucketBatches", "make_buckets", "nearest_bucket"]

"""Aspect-ratio buckets, seeded bucket batches, captioned items and the built-in captioned shapes."""
from __future__ import annotations

import pytest

from utils.data.buckets import BucketBatches, make_buckets, nearest_bucket
from utils.data.captioned import CaptionedImages, folder_sources
from utils.data.captioned_shapes import captioned_shapes, write_captioned_shapes
from utils.errors import UserError


def test_buckets_keep_the_area_and_the_multiple():
    buckets = make_buckets(64, 8, max_ratio=2.0)
    assert (64, 64) in buckets and (32, 128) not in buckets
    for h, w in buckets:
        assert h % 8 == 0 and w % 8 == 0 and h * w <= 64 * 64 and h * w >= 0.75 * 64 * 64
        assert max(h / w, w / h) <= 2.0
    assert buckets[nearest_bucket(480, 640, buckets)] == (56, 72)  # 4:3 goes to the nearest ratio
    with pytest.raises(UserError):
        make_buckets(60, 8)


def test_bucket_batches_are_pure_per_step_and_rank_and_never_mix_buckets():
    bucket_of = [0, 1, 0, 1, 0, 1, 0, 1, 2]
    a, b = BucketBatches(bucket_of, 2, seed=3, world=2), BucketBatches(bucket_of, 2, seed=3, world=2)
    seen = [a.batch(g, r) for g in range(6) for r in range(2)]
    assert seen == [b.batch(g, r) for g in range(6) for r in range(2)]
    assert all(len({bucket_of[i] for i in batch}) == 1 for batch in seen)
    epoch = [i for g in range(2) for r in range(2) for i in a.batch(g, r)]
    assert len(set(epoch)) == 8  # one epoch visits each image of the full buckets once
    with pytest.raises(UserError):
        BucketBatches([0, 1, 2], 2, 0)


def test_captioned_shapes_folder_round_trip(tmp_path):
    built = captioned_shapes(6)
    folder = write_captioned_shapes(tmp_path / "d", n=6)
    read = folder_sources(folder)
    assert [s.caption for s in read] == [s.caption for s in built]
    assert [s.size for s in read] == [s.size for s in built]
    data = CaptionedImages(read, make_buckets(32, 8), center_crop=False, random_flip=True)
    x, y = data[(1, 7)], data[(1, 7)]
    assert (x["pixels"] == y["pixels"]).all() and x["crop_top_left"] == y["crop_top_left"]
    assert x["pixels"].shape[1:] == x["target_size"] and x["pixels"].min() >= -1 and x["pixels"].max() <= 1

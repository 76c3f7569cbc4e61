"""Per-step seeding: randomness is a pure function of (seed, step, rank), and the data order of a step is
known without replaying the steps before it."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from utils.training.seeding import capture_rng, epoch_indices, restore_rng, seed_step


def _draws(seed: int, step: int, rank: int = 0) -> tuple:
    gen = seed_step(seed, step, rank)
    return (torch.rand(4, generator=gen).tolist(), torch.rand(4).tolist(), np.random.rand(4).tolist(),
            [random.random() for _ in range(4)])


def test_seed_step_is_a_pure_function_of_its_arguments():
    first = _draws(7, 12, 1)
    # whatever ran in between (other steps, other draws from every global RNG)...
    _draws(7, 13, 1)
    torch.rand(100), np.random.rand(100), random.random()
    # ...the same (seed, step, rank) gives the same numbers, from its generator and from the global RNGs
    assert _draws(7, 12, 1) == first


@pytest.mark.parametrize("other", [(8, 12, 1), (7, 13, 1), (7, 12, 0)])
def test_another_seed_step_or_rank_gives_other_numbers(other):
    ours = _draws(7, 12, 1)
    theirs = _draws(*other)
    assert all(a != b for a, b in zip(ours, theirs))  # each of the four streams differs


def test_no_two_steps_or_ranks_of_a_run_share_a_stream():
    firsts = {torch.rand(1, generator=seed_step(0, step, rank)).item() for step in range(100) for rank in range(4)}
    assert len(firsts) == 100 * 4


def test_epoch_indices_split_a_permutation_across_ranks_without_overlap():
    n, batch, world = 50, 4, 3
    per_epoch = n // (batch * world)  # 4 steps per epoch, the last 2 images of each permutation dropped
    for epoch in range(3):
        seen = []
        for step in range(epoch * per_epoch, (epoch + 1) * per_epoch):
            for rank in range(world):
                idx = epoch_indices(n, batch, step, seed=5, rank=rank, world=world)
                assert idx.shape == (batch,) and idx.dtype == torch.long
                seen += idx.tolist()
        assert len(seen) == len(set(seen)) == per_epoch * batch * world  # no image twice in an epoch
        assert all(0 <= i < n for i in seen)
    # the epochs are different permutations, and another seed another order
    e0 = epoch_indices(n, batch, 0, seed=5, rank=0, world=world)
    assert not torch.equal(e0, epoch_indices(n, batch, per_epoch, seed=5, rank=0, world=world))
    assert not torch.equal(e0, epoch_indices(n, batch, 0, seed=6, rank=0, world=world))


def test_epoch_indices_of_one_process_cover_the_permutation_in_order():
    n, batch = 12, 4
    epoch = torch.cat([epoch_indices(n, batch, step, seed=1) for step in range(3)])
    assert sorted(epoch.tolist()) == list(range(n))
    # step 3 starts the next epoch: a new permutation, again complete over its 3 steps
    nxt = torch.cat([epoch_indices(n, batch, step, seed=1) for step in range(3, 6)])
    assert sorted(nxt.tolist()) == list(range(n)) and not torch.equal(epoch, nxt)
    # a step's batch does not depend on having computed the steps before it
    assert torch.equal(epoch_indices(n, batch, 4, seed=1), nxt[4:8])


def test_capture_and_restore_rng_round_trip():
    torch.manual_seed(0)
    state = capture_rng()
    a = torch.rand(5)
    torch.rand(17)
    restore_rng(state)
    assert torch.equal(torch.rand(5), a)
    loaded = torch.load(_saved(state), weights_only=True)  # the state is a weights_only-safe checkpoint entry
    restore_rng(loaded)
    assert torch.equal(torch.rand(5), a)


def _saved(obj):
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf

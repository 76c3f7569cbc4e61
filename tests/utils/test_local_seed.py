"""utils.torch_utils.local_seed: random weights from a generator of their own, never the global RNG."""
import threading

import torch

from utils.torch_utils import local_seed


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Conv2d(3, 4, 3), torch.nn.Embedding(6, 2))


def _flat(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_draws_equal_those_after_manual_seed_and_leave_the_global_rng_alone():
    torch.manual_seed(0)
    expected = _flat(_net())
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    with local_seed(0):
        got = _flat(_net())
        noise = torch.randn(3)
    assert torch.equal(got, expected)
    assert torch.equal(torch.random.get_rng_state(), state), "the caller's global RNG was consumed"
    torch.manual_seed(0)
    _flat(_net())
    assert torch.equal(noise, torch.randn(3))  # the same stream continues after the module inits


def test_an_explicit_generator_is_kept():
    g = torch.Generator().manual_seed(5)
    with local_seed(0):
        a = torch.randn(4, generator=g)
    assert torch.equal(a, torch.randn(4, generator=torch.Generator().manual_seed(5)))


def test_threads_drawing_meanwhile_do_not_change_the_weights():
    with local_seed(0):
        alone = _flat(_net())
    stop = threading.Event()

    def noise() -> None:
        while not stop.is_set():
            torch.randn(64)

    others = [threading.Thread(target=noise) for _ in range(2)]
    for t in others:
        t.start()
    try:
        results = []
        for _ in range(5):
            with local_seed(0):
                results.append(_flat(_net()))
    finally:
        stop.set()
        for t in others:
            t.join()
    assert all(torch.equal(r, alone) for r in results)

"""ADA (utils/gan/ada.py) against NVlabs' AugmentPipe, its controller, and the overfitting it reacts to.

The golden fixture ran NVlabs' pipeline with every 'bgc' augmentation at p = 1 in its deterministic
mode (`debug_percentile`: each parameter at a quantile); ours must match to 1e-4 in float32.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from utils.gan.ada import AugmentPipe

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "stylegan3"


@pytest.mark.parametrize("q", [0.1, 0.35, 0.5, 0.8])
def test_augment_pipe_matches_nvlabs_at_fixed_percentiles(q):
    ref = load_file(FIXTURES / "nvlabs_ada.safetensors")
    pipe = AugmentPipe.bgc(p=1.0)
    for name in ("rgb", "grey"):
        x = ref["images" if name == "rgb" else "grey"]
        out = pipe(x, debug_percentile=q)
        assert (out - ref[f"{name}_{q}"]).abs().max() <= 1e-4
        assert (out - x).abs().max() > 0.1  # the augmentations did something


def test_blits_move_pixels_as_named():
    import math

    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    x = torch.stack([torch.sin(2 * math.pi * (1.5 * xx + 0.5 * yy) / 16), torch.cos(2 * math.pi * (0.5 * xx - yy) / 16),
                     0.5 * torch.sin(2 * math.pi * xx / 16)])[None]  # smooth: the band-limited resampling keeps it
    # percentile 0.75: floor(0.75 * 2) = 1, every image mirrored; percentile 0.3: floor(0.3 * 4) = 1 quarter turn
    flipped = AugmentPipe(xflip=1, p=1.0)(x, debug_percentile=0.75)
    assert (flipped - x.flip(-1)).abs().max() < 0.1 < (flipped - x).abs().max()
    turned = AugmentPipe(rotate90=1, p=1.0)(x, debug_percentile=0.3)
    errors = [(turned - torch.rot90(x, k, dims=(2, 3))).abs().max().item() for k in range(4)]
    assert errors[1] < 0.1 and min(errors[0], errors[2], errors[3]) > 1.0
    colour = AugmentPipe(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1, p=0.0)
    assert torch.equal(colour(x, generator=torch.Generator().manual_seed(0)), x)  # p = 0: the identity colour matrix


def test_augmentations_are_differentiable_twice_for_r1():
    pipe = AugmentPipe.bgc(p=0.8)
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    y = pipe(x, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    grad.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_random_draws_come_from_the_generator():
    pipe = AugmentPipe.bgc(p=0.7)
    x = torch.rand(3, 3, 16, 16)
    a = pipe(x, generator=torch.Generator().manual_seed(5))
    b = pipe(x, generator=torch.Generator().manual_seed(5))
    c = pipe(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_controller_moves_p_by_the_sign_of_the_overfitting_heuristic():
    pipe = AugmentPipe.bgc()
    pipe.accumulate(torch.tensor([3.0, 2.0, -1.0, 4.0]))  # r_t = 0.5 < 0.6: p would go down, stays at 0
    assert pipe.adjust(0.6, images=64, ada_kimg=500) == pytest.approx(0.5) and float(pipe.p) == 0.0
    pipe.accumulate(torch.ones(8))  # r_t = 1 > 0.6
    assert pipe.adjust(0.6, images=64, ada_kimg=500) == pytest.approx(1.0)
    assert float(pipe.p) == pytest.approx(64 / 500_000)
    assert pipe.adjust(0.6, images=64) is None  # nothing accumulated since
    state = pipe.state_dict()
    assert {"p", "sign_sum", "sign_count"} <= set(state)  # checkpoints carry the controller


def _overfit_run(train: torch.Tensor, held_out: torch.Tensor, steps: int, seed: int = 0) -> list[float]:
    """D (NVlabs' discriminator behind ADA) against a perfect generator: its 'fakes' are held-out reals of the
    same distribution, so D can only tell reals by memorising the training set. ADA's p after each adjustment."""
    import torch.nn.functional as F

    from models.gan.stylegan3.config import PRESETS
    from models.gan.stylegan3.training import StyleGANCritic

    torch.manual_seed(seed)
    critic = StyleGANCritic(PRESETS["tiny"], AugmentPipe.bgc())
    opt = torch.optim.Adam(critic.parameters(), lr=2e-3, betas=(0.0, 0.99))
    gen = torch.Generator().manual_seed(seed)
    history = []
    for step in range(steps):
        real = train[torch.randint(0, len(train), (8,), generator=gen)]
        fake = held_out[torch.randint(0, len(held_out), (8,), generator=gen)]
        d_real = critic(real, augment=True, generator=gen)
        d_fake = critic(fake, augment=True, generator=gen)
        loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        critic.augment.accumulate(d_real)
        if (step + 1) % 4 == 0:
            critic.augment.adjust(0.6, images=8 * 4, ada_kimg=2)  # fast reaction, for a short run
            history.append(float(critic.augment.p))
    return history


@pytest.mark.slow
def test_p_rises_when_d_overfits_a_tiny_set_and_stays_near_zero_on_a_large_one():
    from utils.data.digits import digits_tensor

    images = digits_tensor(32, "all")[0].expand(-1, 3, -1, -1)
    held_out, train = images[:len(images) // 2], images[len(images) // 2:]
    tiny = _overfit_run(train[:4], held_out, steps=160)
    large = _overfit_run(train, held_out, steps=160)
    print("p on 4 images:", tiny, "\np on the large set:", large)
    # D memorised 4 images: E[sign(D(real))] went above 0.6 and p climbed (to ~0.1 here, where the augmentations
    # bring r_t back to the target); with nothing to memorise p stays near 0
    assert tiny[-1] > 0.05 and tiny[-1] > 3 * max(large[-1], 0.01), (tiny, large)
    assert max(large) < 0.05, large

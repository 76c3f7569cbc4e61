"""Latent tools: interpolation, truncation, saving and loading, with real generators."""
from __future__ import annotations

import math

import pytest
import torch

from models.gan.latents import (interpolate, lerp, load_latents, resample_outside, save_latents, slerp, truncate,
                                truncated_normal)
from utils.errors import UserError
from tests.helpers.images import signed


def test_slerp_endpoints_and_norm():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, generator=g), torch.randn(64, generator=g)
    path = slerp(a, b, torch.linspace(0, 1, 9))
    assert path.shape == (9, 64)
    torch.testing.assert_close(path[0], a, atol=1e-5, rtol=0)
    torch.testing.assert_close(path[-1], b, atol=1e-5, rtol=0)
    ua, ub = a / a.norm(), b / b.norm()
    unit = slerp(ua, ub, torch.linspace(0, 1, 9))
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(9))  # stays on the unit sphere
    line = lerp(ua, ub, torch.linspace(0, 1, 9))
    assert line.norm(dim=1)[4] < 0.9  # where the straight line dips inside
    # constant angular speed: consecutive points are equally far apart
    steps = (unit[1:] - unit[:-1]).norm(dim=1)
    torch.testing.assert_close(steps, steps.mean().expand(8), atol=1e-5, rtol=0)
    # batched rows and (nearly) parallel vectors
    A, B = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    torch.testing.assert_close(slerp(A, B, 0.0), A, atol=1e-5, rtol=0)
    assert slerp(A, B, torch.linspace(0, 1, 4)).shape == (4, 3, 8)
    torch.testing.assert_close(slerp(a, 2 * a, 0.5), 1.5 * a)


def test_lerp_midpoint_and_interpolate():
    a, b = torch.tensor([0.0, 2.0]), torch.tensor([4.0, -2.0])
    torch.testing.assert_close(lerp(a, b, 0.5), torch.tensor([2.0, 0.0]))
    assert interpolate(a, b, 5, "lerp").shape == (5, 2)
    with pytest.raises(UserError):
        interpolate(a, b, 1)
    with pytest.raises(UserError):
        interpolate(a, b, 3, "cubic")


def test_truncation_statistics():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200_000, generator=g)
    t = truncate(z, 0.5)
    assert abs(t.std().item() - 0.5) < 0.01 and abs(t.mean().item()) < 0.01
    torch.testing.assert_close(truncate(z[:4], 0.0, mean=3.0), torch.full((4,), 3.0))
    r = truncated_normal((200_000,), 1.0, generator=g)
    assert r.abs().max() <= 1.0
    # the standard normal truncated to [-1, 1]: variance 1 - 2 phi(1) / (2 Phi(1) - 1)
    phi = math.exp(-0.5) / math.sqrt(2 * math.pi)
    Phi = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
    assert abs(r.std().item() - math.sqrt(1 - 2 * phi / (2 * Phi - 1))) < 0.005
    kept = resample_outside(z[:1000], 1.5, generator=g)
    inside = z[:1000].abs() <= 1.5
    assert torch.equal(kept[inside], z[:1000][inside]) and kept.abs().max() <= 1.5
    with pytest.raises(UserError):
        truncate(z, 1.5)


def test_save_load_round_trip_drives_a_class_conditional_generator(tmp_path):
    from models import generate

    z = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([3, 3, 7, 7])
    path = save_latents(tmp_path / "z.safetensors", z, labels, {"model": "dcgan"})
    z2, y2, meta = load_latents(path)
    assert torch.equal(z, z2) and torch.equal(labels, y2) and meta == {"model": "dcgan"}
    a = signed(generate("gan", "dcgan", latents=z, labels=labels.tolist()))
    b = signed(generate("gan", "dcgan", latents=z2, labels=y2.tolist()))
    assert torch.equal(a, b)
    walk = interpolate(z2[0], z2[2], 4)  # an unconditional model takes the same tensors
    assert generate("gan", "wgan_gp", preset="tiny", latents=walk[:, :8]).images[0].size == (16, 16)
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(UserError, match="cannot read latents"):
        load_latents(tmp_path / "bad.safetensors")
    with pytest.raises(UserError, match="not found"):
        load_latents(tmp_path / "missing.safetensors")

"""Spherical harmonics against gsplat's reference implementation."""
from __future__ import annotations

import pytest
import torch

from utils.rendering.sh import rgb_to_sh, sh_to_rgb, spherical_harmonics


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_matches_gsplat_reference(degree):
    from gsplat.cuda._torch_impl import _spherical_harmonics

    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(500, 3, generator=g)
    coeffs = torch.randn(500, 16, 3, generator=g)
    ours = spherical_harmonics(degree, dirs, coeffs)
    ref = _spherical_harmonics(degree, dirs, coeffs)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_dc_round_trip():
    rgb = torch.rand(10, 3)
    assert torch.allclose(sh_to_rgb(rgb_to_sh(rgb)), rgb, atol=1e-6)
    out = spherical_harmonics(0, torch.randn(10, 3), rgb_to_sh(rgb)[:, None, :])
    assert torch.allclose(out + 0.5, rgb, atol=1e-6)

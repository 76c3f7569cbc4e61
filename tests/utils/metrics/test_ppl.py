"""PPL: interpolation, percentile filtering and the whole loop on a tiny analytic generator."""
from __future__ import annotations

import numpy as np
import torch

from utils.metrics.lpips import LPIPS
from utils.metrics.ppl import filter_percentiles, lerp, perceptual_path_length, slerp, stylegan_crop


def test_slerp_endpoints_and_norm():
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    torch.testing.assert_close(slerp(a, b, torch.zeros(4)), a / a.norm(dim=1, keepdim=True))
    torch.testing.assert_close(slerp(a, b, torch.ones(4)), b / b.norm(dim=1, keepdim=True), atol=1e-5, rtol=0)
    assert torch.allclose(slerp(a, b, torch.full((4,), 0.3)).norm(dim=1), torch.ones(4))
    torch.testing.assert_close(lerp(a, b, torch.full((4,), 0.5)), (a + b) / 2)


def test_filter_percentiles_drops_the_tails():
    d = np.arange(1000, dtype=float)
    kept = filter_percentiles(d)
    assert kept.min() == 9 and kept.max() == 990


def test_crop_region():
    x = torch.arange(64.0).view(1, 1, 8, 8)
    c = stylegan_crop(x)
    assert c.shape == (1, 1, 4, 4) and c[0, 0, 0, 0] == 3 * 8 + 2


def test_ppl_on_tiny_generators():
    torch.manual_seed(0)
    proj = torch.randn(8, 3 * 64 * 64) * 0.05
    gen = lambda z: torch.tanh(z @ proj).view(-1, 3, 64, 64)
    lp = LPIPS("alex")
    const = lambda z: torch.zeros(len(z), 3, 64, 64)
    ppl0, d0 = perceptual_path_length(const, 8, num_samples=6, lpips=lp, batch_size=4, progress=False)
    assert ppl0 == 0 and len(d0) == 6
    ppl, d = perceptual_path_length(gen, 8, num_samples=6, lpips=lp, batch_size=3, progress=False, seed=1)
    assert ppl > 0 and np.isfinite(d).all()
    again, _ = perceptual_path_length(gen, 8, num_samples=6, lpips=lp, batch_size=3, progress=False, seed=1)
    assert again == ppl
    mapping = lambda z: z * 2
    ppl_w, _ = perceptual_path_length(gen, 8, num_samples=4, space="w", mapping=mapping, lpips=lp,
                                      sampling="end", crop=True, progress=False)
    assert ppl_w > 0

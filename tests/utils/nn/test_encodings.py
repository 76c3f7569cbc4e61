"""Encodings: the integrated positional encoding reduces to the positional one as the variance goes
to 0 and is the Gaussian expectation of it; the hash grid's level resolutions and table indices
follow the Instant-NGP formulas on fixed inputs; its fast backward equals autograd's."""
from __future__ import annotations

import math

import pytest
import torch

from utils.errors import UserError
from utils.nn.encodings import (HASH_PRIMES, HashGridEncoding, IntegratedPositionalEncoding, PositionalEncoding,
                                SHDirectionEncoding, hash_grid_indices, hash_grid_resolutions, tcnn_available)


def test_positional_encoding_layout():
    pe = PositionalEncoding(3, max_deg=4)
    x = torch.tensor([[0.3, -1.2, 2.0]])
    out = pe(x)
    assert out.shape == (1, pe.out_dim) == (1, 3 + 3 * 2 * 4)
    assert torch.equal(out[0, :3], x[0])
    # frequency l: sin of the three inputs, then their cosines
    l = 2
    block = out[0, 3 + 6 * l: 3 + 6 * (l + 1)]
    assert torch.allclose(block, torch.cat([torch.sin(4 * x[0]), torch.cos(4 * x[0])]))


def test_integrated_encoding_reduces_to_positional_as_variance_vanishes():
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    ipe, pe = IntegratedPositionalEncoding(3, max_deg=10), PositionalEncoding(3, max_deg=10, include_input=False)
    errors = []
    for var in (1e-6, 1e-8, 1e-10, 0.0):
        err = float((ipe(x, torch.full_like(x, var)) - pe(x)).abs().max())
        # |E - PE| <= 1 - exp(-4^l var / 2) at the highest frequency l = 9
        assert err <= 1 - math.exp(-0.5 * var * 4 ** 9) + 1e-6
        errors.append(err)
    assert errors[0] > errors[1] > errors[2] and errors[-1] == 0.0
    # a wide Gaussian damps the high frequencies away
    wide = ipe(x, torch.ones_like(x))
    assert wide[:, -6:].abs().max() < 1e-30 and wide[:, :6].abs().max() > 0.1


def test_integrated_encoding_is_the_gaussian_expectation():
    g = torch.Generator().manual_seed(1)
    mean = torch.tensor([[0.4, -0.7, 1.1]], dtype=torch.float64)
    var = torch.tensor([[0.01, 0.04, 0.002]], dtype=torch.float64)
    samples = mean + var.sqrt() * torch.randn(400_000, 3, generator=g, dtype=torch.float64)
    mc = PositionalEncoding(3, max_deg=5, include_input=False).double()(samples).mean(0)
    ipe = IntegratedPositionalEncoding(3, max_deg=5).double()(mean, var)[0]
    assert (mc - ipe).abs().max() < 5e-3


def test_hash_grid_level_resolutions_follow_the_paper():
    # N_l = floor(N_min b^l), b = exp((ln N_max - ln N_min) / (L - 1)): 16 .. 2048 over 16 levels, b = 1.3819
    assert hash_grid_resolutions(16, 16, 2048) == [16, 22, 30, 42, 58, 80, 111, 153, 212, 294, 406, 561, 776, 1072,
                                                   1482, 2048]
    assert hash_grid_resolutions(1, 32, 999) == [32]
    enc = HashGridEncoding(16, 2, 19, 16, 2048)
    assert enc.resolutions == hash_grid_resolutions(16, 16, 2048) and enc.out_dim == 32
    # levels with (N + 1)^3 <= T index 1:1; the table holds min((N + 1)^3, T) rows per level
    assert enc.dense_levels == [(n + 1) ** 3 <= 2 ** 19 for n in enc.resolutions] and enc.n_dense == 5
    assert enc.table.shape[0] == sum(min((n + 1) ** 3, 2 ** 19) for n in enc.resolutions)


def test_hash_grid_table_indices_on_fixed_points():
    enc = HashGridEncoding(num_levels=3, features_per_level=2, log2_hashmap_size=10, base_resolution=4,
                           max_resolution=16)
    assert enc.resolutions == [4, 8, 16] and enc.dense_levels == [True, True, False]
    x = torch.tensor([[0.30, 0.55, 0.90]])
    idx, w = enc.indices(x)
    offsets = [0, 125, 125 + 729]
    for level, n in enumerate(enc.resolutions):
        lo = [math.floor(v * n) for v in x[0].tolist()]
        for corner in range(8):
            v = [lo[i] + ((corner >> i) & 1) for i in range(3)]
            if level < 2:  # dense: x + y (N + 1) + z (N + 1)^2
                expected = v[0] + v[1] * (n + 1) + v[2] * (n + 1) ** 2
            else:  # the spatial hash of the paper, with Python integers
                expected = (v[0] * HASH_PRIMES[0] ^ v[1] * HASH_PRIMES[1] ^ v[2] * HASH_PRIMES[2]) % 2 ** 10
            assert int(idx[0, level, corner]) == offsets[level] + expected
            frac = [x[0, i].item() * n - lo[i] for i in range(3)]
            weight = math.prod(frac[i] if (corner >> i) & 1 else 1 - frac[i] for i in range(3))
            assert abs(float(w[0, level, corner]) - weight) < 1e-5
    # the reference function agrees with the module on whole grids of vertices
    corners = torch.randint(0, 17, (100, 3), generator=torch.Generator().manual_seed(0))
    assert torch.equal(hash_grid_indices(corners, 16, 2 ** 10),
                       torch.tensor([(int(a) ^ int(b) * HASH_PRIMES[1] ^ int(c) * HASH_PRIMES[2]) % 1024
                                     for a, b, c in corners]))


def test_hash_grid_interpolates_its_table():
    enc = HashGridEncoding(num_levels=2, features_per_level=2, log2_hashmap_size=12, base_resolution=4,
                           max_resolution=8)
    with torch.no_grad():
        enc.table.normal_(generator=torch.Generator().manual_seed(0))
    # at a vertex the feature is that vertex's entry; half-way along an edge, the mean of its two
    v = torch.tensor([[0.25, 0.5, 0.75]])  # vertex (1, 2, 3) of level 0 (N = 4)
    f = enc(v)[0, :2]
    assert torch.allclose(f, enc.table[1 + 2 * 5 + 3 * 25], atol=1e-6)
    mid = enc(torch.tensor([[0.375, 0.5, 0.75]]))[0, :2]
    assert torch.allclose(mid, 0.5 * (enc.table[1 + 2 * 5 + 3 * 25] + enc.table[2 + 2 * 5 + 3 * 25]), atol=1e-6)


def test_hash_grid_fast_backward_equals_autograd():
    enc = HashGridEncoding(num_levels=4, features_per_level=2, log2_hashmap_size=8, base_resolution=4,
                           max_resolution=32)
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(0))
    g = torch.randn(500, enc.out_dim, generator=torch.Generator().manual_seed(1))
    (enc(x) * g).sum().backward()
    fast = enc.table.grad.clone()
    enc.table.grad = None
    xg = x.clone().requires_grad_()  # points with gradients take the plain autograd path
    (enc(xg) * g).sum().backward()
    assert torch.allclose(fast, enc.table.grad, atol=1e-5)
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_sh_direction_encoding_has_sixteen_features():
    enc = SHDirectionEncoding(3)
    d = torch.nn.functional.normalize(torch.randn(10, 3), dim=-1)
    out = enc(d)
    assert out.shape == (10, 16) and torch.allclose(out[:, 0], torch.full((10,), 0.28209479177387814))


def test_unknown_backend_is_a_user_error():
    with pytest.raises(UserError, match="backend"):
        HashGridEncoding(backend="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not tcnn_available(), reason="needs tiny-cuda-nn and a CUDA GPU")
def test_tcnn_backend_runs_and_learns():
    enc = HashGridEncoding(4, 2, 12, 4, 64, backend="tcnn").cuda()
    x = torch.rand(1024, 3, device="cuda")
    out = enc(x)
    assert out.shape == (1024, 8) and enc.backend == "tcnn"
    out.float().square().sum().backward()
    assert any(p.grad is not None for p in enc.parameters())

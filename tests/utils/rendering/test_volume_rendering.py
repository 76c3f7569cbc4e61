"""Volume rendering: closed forms of a constant-density slab and an opaque plane, and parity with
nerfacc's `render_weight_from_density`, `render_transmittance_from_density`, the alpha variants and
`accumulate_along_rays`, padded and packed (nerfacc's packed scans need CUDA; on CPU ours packed is
compared with nerfacc padded on the same rays)."""
from __future__ import annotations

import math

import nerfacc
import pytest
import torch

from utils.errors import UserError
from utils.rendering.volume_rendering import (accumulate_along_rays, exclusive_sum, packed_info,
                                              transmittance_from_alpha, transmittance_from_density,
                                              visibility_from_density, volume_render, weights_from_alpha,
                                              weights_from_density)

TOL = 1e-5


def _random_rays(n_rays=7, max_samples=13, seed=0, device="cpu"):
    """Packed rays with 0..max_samples samples each, and the same rays padded with empty samples."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, max_samples + 1, (n_rays,), generator=g)
    counts[0] = max_samples  # one full ray, one empty one
    counts[1] = 0
    ray_indices = torch.arange(n_rays).repeat_interleave(counts)
    n = int(counts.sum())
    deltas = torch.rand(n, generator=g) * 0.3 + 0.01
    starts = torch.zeros(n)
    first = torch.cumsum(counts, 0) - counts
    for r in range(n_rays):
        s, c = int(first[r]), int(counts[r])
        if c:
            starts[s:s + c] = 1.0 + torch.cumsum(deltas[s:s + c], 0) - deltas[s:s + c]
    ends = starts + deltas
    sigmas = torch.rand(n, generator=g) * 3
    rgbs = torch.rand(n, 3, generator=g)
    # padded: each ray's samples, then zero-width, zero-density samples
    pad_s = torch.zeros(n_rays, max_samples)
    pad_e = torch.zeros(n_rays, max_samples)
    pad_sig = torch.zeros(n_rays, max_samples)
    pad_rgb = torch.zeros(n_rays, max_samples, 3)
    slot = torch.arange(n) - first.repeat_interleave(counts)
    pad_s[ray_indices, slot], pad_e[ray_indices, slot] = starts, ends
    pad_sig[ray_indices, slot], pad_rgb[ray_indices, slot] = sigmas, rgbs
    packed = dict(t_starts=starts, t_ends=ends, sigmas=sigmas, rgbs=rgbs, ray_indices=ray_indices, n_rays=n_rays)
    padded = dict(t_starts=pad_s, t_ends=pad_e, sigmas=pad_sig, rgbs=pad_rgb, slot=slot)
    return {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in packed.items()}, \
        {k: v.to(device) for k, v in padded.items()}


def test_constant_density_slab_has_the_closed_form():
    sigma, a, b, n = 1.7, 2.0, 3.5, 4000
    t = torch.linspace(a, b, n + 1, dtype=torch.float64)
    ts, te = t[:-1], t[1:]
    w, trans, alphas = weights_from_density(ts, te, torch.full((n,), sigma, dtype=torch.float64))
    assert torch.allclose(trans, torch.exp(-sigma * (ts - a)), atol=1e-12)
    assert torch.allclose(w, torch.exp(-sigma * (ts - a)) * (1 - math.exp(-sigma * (b - a) / n)), atol=1e-12)
    r = volume_render(ts[None], te[None], torch.full((1, n), sigma, dtype=torch.float64),
                      torch.full((1, n, 3), 0.25, dtype=torch.float64), background=torch.ones(3, dtype=torch.float64))
    length = b - a
    opacity = 1 - math.exp(-sigma * length)
    assert abs(float(r.opacity) - opacity) < 1e-12
    # expected depth of an exponential truncated to the slab
    depth = a + 1 / sigma - length * math.exp(-sigma * length) / opacity
    assert abs(float(r.depth) - depth) < 1e-6
    assert torch.allclose(r.rgb, torch.full((1, 3), 0.25 * opacity + (1 - opacity), dtype=torch.float64))


def test_single_opaque_plane():
    t = torch.linspace(0.0, 4.0, 41)
    sigmas = torch.zeros(40)
    sigmas[25] = 1e4  # the interval [2.5, 2.6)
    colors = torch.zeros(40, 3)
    colors[25] = torch.tensor([0.2, 0.4, 0.9])
    w, trans, _ = weights_from_density(t[:-1], t[1:], sigmas)
    assert torch.allclose(w, torch.nn.functional.one_hot(torch.tensor(25), 40).float(), atol=1e-6)
    assert torch.allclose(trans[:26], torch.ones(26)) and float(trans[26:].max()) < 1e-30
    r = volume_render(t[None, :-1], t[None, 1:], sigmas[None], colors[None], background=torch.ones(3))
    assert abs(float(r.depth) - 2.55) < 1e-5 and abs(float(r.opacity) - 1) < 1e-6
    assert torch.allclose(r.rgb[0], colors[25], atol=1e-6)
    # the same plane in packed form, seen by a second ray that misses it
    packed = volume_render(torch.cat([t[:-1], t[:-1]]), torch.cat([t[1:], t[1:]]), torch.cat([sigmas, torch.zeros(40)]),
                           torch.cat([colors, colors]), torch.arange(2).repeat_interleave(40), 2,
                           background=torch.ones(3))
    assert torch.allclose(packed.rgb, torch.stack([colors[25], torch.ones(3)]), atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_padded_matches_nerfacc(seed):
    _, pad = _random_rays(seed=seed)
    ours_w, ours_t, ours_a = weights_from_density(pad["t_starts"], pad["t_ends"], pad["sigmas"])
    ref_w, ref_t, ref_a = nerfacc.render_weight_from_density(pad["t_starts"], pad["t_ends"], pad["sigmas"])
    for a, b in ((ours_w, ref_w), (ours_t, ref_t), (ours_a, ref_a)):
        assert (a - b).abs().max() <= TOL
    trans, alphas = transmittance_from_density(pad["t_starts"], pad["t_ends"], pad["sigmas"])
    ref_trans, ref_alphas = nerfacc.render_transmittance_from_density(pad["t_starts"], pad["t_ends"], pad["sigmas"])
    assert (trans - ref_trans).abs().max() <= TOL and (alphas - ref_alphas).abs().max() <= TOL
    a = alphas.clamp(max=0.95)
    assert (transmittance_from_alpha(a) - nerfacc.render_transmittance_from_alpha(a)).abs().max() <= TOL
    w2, t2 = weights_from_alpha(a)
    rw2, rt2 = nerfacc.render_weight_from_alpha(a)
    assert (w2 - rw2).abs().max() <= TOL and (t2 - rt2).abs().max() <= TOL
    assert (accumulate_along_rays(ours_w, pad["rgbs"]) - nerfacc.accumulate_along_rays(ref_w, pad["rgbs"])).abs().max() <= TOL


@pytest.mark.parametrize("seed", [0, 3])
def test_packed_matches_nerfacc_padded(seed):
    packed, pad = _random_rays(n_rays=9, seed=seed)
    ri, n, slot = packed["ray_indices"], packed["n_rays"], pad["slot"]
    w, trans, alphas = weights_from_density(packed["t_starts"], packed["t_ends"], packed["sigmas"], ri, n)
    ref_w, ref_t, ref_a = nerfacc.render_weight_from_density(pad["t_starts"], pad["t_ends"], pad["sigmas"])
    assert (w - ref_w[ri, slot]).abs().max() <= TOL
    assert (trans - ref_t[ri, slot]).abs().max() <= TOL and (alphas - ref_a[ri, slot]).abs().max() <= TOL
    a = alphas.clamp(max=0.95)
    ref_ta = nerfacc.render_transmittance_from_alpha(
        torch.zeros_like(pad["sigmas"]).index_put((ri, slot), a))
    assert (transmittance_from_alpha(a, ri, n) - ref_ta[ri, slot]).abs().max() <= TOL
    # nerfacc's accumulate_along_rays runs packed on CPU (an index_add)
    for values in (packed["rgbs"], None, ((packed["t_starts"] + packed["t_ends"]) / 2)[:, None]):
        ours = accumulate_along_rays(w, values, ri, n)
        ref = nerfacc.accumulate_along_rays(w, values, ri, n)
        assert ours.shape == ref.shape == (n, 1 if values is None else values.shape[-1])
        assert (ours - ref).abs().max() <= TOL
    # the whole render, packed and padded, agree (empty rays show the background)
    bg = torch.tensor([0.1, 0.2, 0.3])
    rp = volume_render(packed["t_starts"], packed["t_ends"], packed["sigmas"], packed["rgbs"], ri, n, background=bg)
    rd = volume_render(pad["t_starts"], pad["t_ends"], pad["sigmas"], pad["rgbs"], background=bg)
    assert (rp.rgb - rd.rgb).abs().max() <= TOL and (rp.opacity - rd.opacity).abs().max() <= TOL
    assert torch.allclose(rp.rgb[1], bg)


def test_packed_gradients_match_padded():
    packed, pad = _random_rays(seed=5)
    sig_p = packed["sigmas"].clone().requires_grad_()
    sig_d = pad["sigmas"].clone().requires_grad_()
    rp = volume_render(packed["t_starts"], packed["t_ends"], sig_p, packed["rgbs"], packed["ray_indices"],
                       packed["n_rays"])
    rd = volume_render(pad["t_starts"], pad["t_ends"], sig_d, pad["rgbs"])
    rp.rgb.square().sum().backward()
    rd.rgb.square().sum().backward()
    assert (sig_p.grad - sig_d.grad[packed["ray_indices"], pad["slot"]]).abs().max() <= TOL


def test_exclusive_sum_stays_exact_over_many_rays():
    # 200k samples: a float32 running total over all rays would lose the small per-ray sums
    counts = torch.full((20_000,), 10)
    x = torch.full((200_000,), 3.0)
    out = exclusive_sum(x, torch.arange(20_000).repeat_interleave(counts), 20_000)
    assert torch.equal(out.reshape(20_000, 10)[-1], torch.arange(10.0) * 3)
    assert packed_info(torch.tensor([0, 0, 2, 2, 2]), 4).tolist() == [[0, 2], [2, 0], [2, 3], [5, 0]]


def test_visibility_skips_samples_behind_opaque_ones():
    t = torch.linspace(0, 1, 11)
    sigmas = torch.tensor([0.0, 0.0, 1e3, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    keep = visibility_from_density(t[:-1], t[1:], sigmas, early_stop_eps=1e-4, alpha_thre=1e-3)
    assert keep.tolist() == [False, False, True] + [False] * 7


def test_layout_mistakes_are_user_errors():
    with pytest.raises(UserError, match="n_rays"):
        weights_from_density(torch.zeros(3), torch.ones(3), torch.ones(3), ray_indices=torch.zeros(3, dtype=torch.long))
    with pytest.raises(UserError, match="flat"):
        exclusive_sum(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), 1)
    with pytest.raises(UserError, match="backend"):
        exclusive_sum(torch.zeros(3), torch.zeros(3, dtype=torch.long), 1, backend="cuda-fast")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (nerfacc's packed scans are CUDA kernels)")
def test_packed_on_cuda_matches_nerfacc_packed():
    packed, _ = _random_rays(n_rays=64, max_samples=40, seed=7, device="cuda")
    ri, n = packed["ray_indices"], packed["n_rays"]
    args = (packed["t_starts"], packed["t_ends"], packed["sigmas"])
    ours = weights_from_density(*args, ri, n, backend="torch")
    via_nerfacc_backend = weights_from_density(*args, ri, n, backend="nerfacc")
    ref = nerfacc.render_weight_from_density(*args, ray_indices=ri, n_rays=n)
    for a, b, c in zip(ours, via_nerfacc_backend, ref):
        assert (a - c).abs().max() <= TOL and (b - c).abs().max() <= TOL
    a = ours[2].clamp(max=0.95)
    ref_ta = nerfacc.render_transmittance_from_alpha(a, ray_indices=ri, n_rays=n)
    assert (transmittance_from_alpha(a, ri, n, backend="torch") - ref_ta).abs().max() <= TOL

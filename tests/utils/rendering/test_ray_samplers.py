"""Ray samplers: stratified bins stay in their strata, inverse-CDF samples follow a known
piecewise-constant density (Kolmogorov-Smirnov), proposal sampling concentrates on a surface, and
the mip-NeRF 360 losses match their definitions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from utils.errors import UserError
from utils.rendering.contraction import contract, normalized_contract
from utils.rendering.ray_losses import distortion_loss, interlevel_loss, outer_measure
from utils.rendering.ray_samplers import ProposalSampler, inverse_cdf_bins, spacing_fns, stratified_bins


def test_stratified_bins_stay_in_their_strata():
    near, far = torch.full((50, 1), 2.0), torch.full((50, 1), 6.0)
    plain = stratified_bins(near, far, 8)
    assert torch.allclose(plain[0], torch.linspace(2, 6, 9))
    jit = stratified_bins(near, far, 8, stratified=True, generator=torch.Generator().manual_seed(0))
    assert (jit[:, 0] == 2).all() and (jit[:, -1] == 6).all() and (jit.diff(dim=-1) >= 0).all()
    mids = 0.5 * (plain[0, 1:] + plain[0, :-1])
    lower, upper = torch.cat([plain[0, :1], mids]), torch.cat([mids, plain[0, -1:]])
    assert ((jit >= lower - 1e-6) & (jit <= upper + 1e-6)).all()
    assert jit.std(0)[1:-1].min() > 0.05  # the interior edges do move
    disp = stratified_bins(near[:1], far[:1], 4, spacing="disparity")
    assert torch.allclose((1 / disp).diff(), torch.full((4,), (1 / 6 - 1 / 2) / 4))
    to_s, to_t = spacing_fns("uniform_disparity", torch.tensor(0.05), torch.tensor(1000.0))
    t = torch.tensor([0.1, 0.9, 3.0, 500.0])
    assert torch.allclose(to_t(to_s(t)), t, rtol=1e-4)


def _piecewise_cdf(edges: np.ndarray, weights: np.ndarray):
    cdf = np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
    return lambda x: np.interp(x, edges, cdf)


def test_inverse_cdf_samples_follow_a_piecewise_constant_density():
    edges = torch.tensor([0.0, 1.0, 1.5, 3.0, 3.2, 4.0])
    weights = torch.tensor([0.1, 0.0, 0.5, 0.3, 0.1])
    n_rays, n = 400, 25
    bins = inverse_cdf_bins(edges.expand(n_rays, -1), weights.expand(n_rays, -1), n, stratified=True,
                            generator=torch.Generator().manual_seed(0), padding=0.0)
    assert bins.shape == (n_rays, n + 1) and (bins.diff(dim=-1) >= 0).all()
    samples = bins.reshape(-1).numpy()  # every edge is a stratified sample of the density
    cdf = _piecewise_cdf(edges.numpy(), weights.numpy())
    ks = stats.kstest(samples, cdf)
    assert ks.pvalue > 0.01, ks
    assert not ((samples > 1.0) & (samples < 1.5)).any()  # no sample where the density is zero
    # the test bites: uniform samples over the same range are rejected
    uniform = np.random.default_rng(0).uniform(0, 4, samples.size)
    assert stats.kstest(uniform, cdf).pvalue < 1e-6
    # padding keeps some samples in the empty bin; a ray without weight samples uniformly
    padded = inverse_cdf_bins(edges[None], weights[None], 200, padding=0.05)
    assert ((padded > 1.0) & (padded < 1.5)).any()
    flat = inverse_cdf_bins(edges[None], torch.zeros(1, 5), 4, padding=0.0)
    assert torch.allclose(flat, torch.tensor([[0.5, 1.25, 2.25, 3.1, 3.6]]), atol=1e-5)
    with pytest.raises(UserError, match="edges"):
        inverse_cdf_bins(edges[None], weights[None, :4], 4)


def test_proposal_sampler_concentrates_on_a_surface():
    n = 64
    origins = torch.zeros(n, 3)
    origins[:, 0] = torch.linspace(-0.3, 0.3, n)
    origins[:, 2] = -3.0
    dirs = torch.tensor([0.0, 0.0, 1.0]).expand(n, 3)

    def plane(x):  # an opaque slab at z in [0, 0.3], i.e. t in [3, 3.3]
        return torch.where((x[..., 2] >= 0) & (x[..., 2] < 0.3), torch.full_like(x[..., 2], 50.0),
                           torch.zeros_like(x[..., 2]))

    sampler = ProposalSampler((64, 32), 16, spacing="linear", single_jitter=False)
    bins, all_bins, all_w = sampler(origins, dirs, torch.full((n, 1), 0.5), torch.full((n, 1), 8.0), [plane, plane],
                                    stratified=True, generator=torch.Generator().manual_seed(0))
    assert bins.shape == (n, 17) and [b.shape[-1] for b in all_bins] == [65, 33, 17] and len(all_w) == 2
    mids = 0.5 * (bins[:, 1:] + bins[:, :-1])
    near_surface = ((mids > 2.9) & (mids < 3.4)).float().mean()
    assert near_surface > 0.6, near_surface  # uniform bins would put 0.5 / 7.5 = 7% there
    assert all_w[1].sum(-1).min() > 0.9  # the second pass sees the slab on every ray


def test_interlevel_loss_vanishes_for_a_bounding_proposal_and_penalises_a_miss():
    t = torch.linspace(0, 1, 11)[None]
    w = torch.zeros(1, 10)
    w[0, 4] = 0.9
    assert float(interlevel_loss(t, w, [t], [w])) == 0.0
    coarse_t = torch.linspace(0, 1, 3)[None]  # one proposal bin covering the surface holds all weight
    assert float(interlevel_loss(t, w, [coarse_t], [torch.tensor([[0.95, 0.0]])])) == 0.0
    missed = interlevel_loss(t, w, [coarse_t], [torch.tensor([[0.0, 0.95]])])
    assert abs(float(missed) - 0.9 ** 2 / 0.9) < 1e-5
    assert torch.allclose(outer_measure(t, coarse_t, torch.tensor([[0.2, 0.7]]))[0, [0, 4, 5, 9]],
                          torch.tensor([0.2, 0.2, 0.7, 0.7]))


def test_distortion_loss_matches_its_double_sum():
    g = torch.Generator().manual_seed(0)
    bins = torch.sort(torch.rand(5, 13, generator=g), -1).values
    w = torch.rand(5, 12, generator=g) / 12
    m = 0.5 * (bins[:, 1:] + bins[:, :-1])
    brute = (w[:, :, None] * w[:, None, :] * (m[:, :, None] - m[:, None, :]).abs()).sum((1, 2)) + \
        (w ** 2 * bins.diff(dim=-1)).sum(-1) / 3
    assert torch.allclose(distortion_loss(bins, w), brute.mean(), atol=1e-6)
    # a single concentrated weight costs less than the same mass spread out
    tight, spread = torch.zeros(1, 12), torch.full((1, 12), 1 / 12)
    tight[0, 6] = 1.0
    assert distortion_loss(bins[:1], tight) < distortion_loss(bins[:1], spread)


def test_contraction_maps_space_into_radius_two():
    x = torch.tensor([[0.5, -0.2, 0.1], [3.0, 0.0, 0.0], [0.0, -1e6, 0.0], [2.0, 2.0, 0.0]])
    c = contract(x, "l2")
    assert torch.allclose(c[0], x[0]) and torch.allclose(c[1], torch.tensor([2 - 1 / 3, 0.0, 0.0]))
    assert c.norm(dim=-1).max() < 2.0 + 1e-6
    ci = contract(x, "inf")
    assert torch.allclose(ci[3], torch.tensor([1.5, 1.5, 0.0]))
    u = normalized_contract(x, torch.tensor([-1.0, -1, -1, 1, 1, 1]))
    assert (u >= 0).all() and (u <= 1).all()
    with pytest.raises(UserError, match="norm"):
        contract(x, "l1")


def test_inverse_cdf_matches_nerfacc_pdf_sampling():
    # nerfacc's PyTorch PDF sampler (used by its proposal estimator) places its deterministic samples at
    # the quantiles (k + 1/2) / S, as ours does its bin edges
    from nerfacc.pdf import _sample_from_weighted

    g = torch.Generator().manual_seed(4)
    bins = torch.sort(torch.rand(30, 17, generator=g) * 5, -1).values
    weights = torch.rand(30, 16, generator=g) ** 3
    ours = inverse_cdf_bins(bins, weights, 23, padding=0.0)
    _, centers = _sample_from_weighted(bins, weights, 24)
    assert (ours - centers).abs().max() <= 1e-4  # (nerfacc pulls its last u in by one float eps)

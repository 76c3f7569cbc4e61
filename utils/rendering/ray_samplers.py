"""Where to put samples along rays: stratified, inverse-CDF (hierarchical) and proposal sampling.

Samples are intervals: a ray's `bins` (R, S + 1) are increasing distances t, and sample i is
[bins[i], bins[i + 1]). Randomness comes from an explicit `torch.Generator` (CPU), so a training
step is a pure function of its seed (`utils.training.seed_step`).

- `stratified_bins`: S equal strata between near and far (in t, in disparity 1/t, or in any
  spacing function), one uniform jitter per stratum when `stratified` (NeRF, eq. 2).
- `inverse_cdf_bins`: S intervals drawn from the piecewise-constant density that weights put on
  existing bins (NeRF's hierarchical sampling, eq. 5), by inverting its CDF at stratified u.
- `ProposalSampler`: mip-NeRF 360's proposal sampling (Barron et al. 2022), as nerfstudio's
  nerfacto uses it: uniform bins in a spacing s = g(t), then per proposal network a density
  pass and a resample from its (annealed) weights, ending with the bins of the NeRF field.
- Occupancy-grid sampling with empty-space skipping lives in `utils.rendering.occupancy_grid`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from utils.errors import UserError

__all__ = ["SPACINGS", "spacing_fns", "stratified_bins", "inverse_cdf_bins", "sorted_union", "ProposalSampler",
           "bin_midpoints"]


def _linear(t: Tensor) -> Tensor:
    return t


def _disparity(t: Tensor) -> Tensor:
    return 1.0 / t


def _uniform_then_disparity(t: Tensor) -> Tensor:
    # nerfstudio's default for unbounded scenes: linear inside distance 1, disparity outside
    return torch.where(t < 1, t / 2, 1 - 1 / (2 * t))


def _uniform_then_disparity_inv(s: Tensor) -> Tensor:
    return torch.where(s < 0.5, 2 * s, 1 / (2 - 2 * s).clamp_min(1e-12))


SPACINGS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "linear": (_linear, _linear),
    "disparity": (_disparity, _disparity),
    "uniform_disparity": (_uniform_then_disparity, _uniform_then_disparity_inv),
}
"""name -> (g, g^-1): the spacing s = g(t) in which samples are spread evenly."""


def spacing_fns(name: str, near: Tensor, far: Tensor) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """Maps between t in [near, far] and the normalised spacing s in [0, 1]."""
    if name not in SPACINGS:
        raise UserError(f"unknown sample spacing '{name}': use one of {', '.join(SPACINGS)}")
    g, g_inv = SPACINGS[name]
    s_near, s_far = g(near), g(far)

    def to_s(t: Tensor) -> Tensor:
        return (g(t) - s_near) / (s_far - s_near)

    def to_t(s: Tensor) -> Tensor:
        return g_inv(s * s_far + (1 - s) * s_near)

    return to_s, to_t


def stratified_bins(near: Tensor, far: Tensor, num_samples: int, stratified: bool = False,
                    generator: torch.Generator | None = None, spacing: str = "linear") -> Tensor:
    """Bins (R, S + 1) between near (R, 1) and far (R, 1): S strata equal in `spacing`, each bin
    edge jittered inside its stratum when `stratified` (the first and last stay at near and far)."""
    near, far = near.reshape(-1, 1), far.reshape(-1, 1)
    s = torch.linspace(0.0, 1.0, num_samples + 1, device=near.device, dtype=near.dtype).expand(near.shape[0], -1)
    if stratified:
        u = torch.rand(s.shape, generator=generator, dtype=s.dtype).to(s.device)
        mids = 0.5 * (s[:, 1:] + s[:, :-1])
        lower = torch.cat([s[:, :1], mids], -1)
        upper = torch.cat([mids, s[:, -1:]], -1)
        s = lower + (upper - lower) * u
        s = torch.cat([torch.zeros_like(s[:, :1]), s[:, 1:-1], torch.ones_like(s[:, :1])], -1)
    _, to_t = spacing_fns(spacing, near, far)
    return to_t(s)


def bin_midpoints(bins: Tensor) -> Tensor:
    return 0.5 * (bins[..., 1:] + bins[..., :-1])


def inverse_cdf_bins(bins: Tensor, weights: Tensor, num_samples: int, stratified: bool = False,
                     generator: torch.Generator | None = None, padding: float = 0.01, single_jitter: bool = False,
                     eps: float = 1e-5) -> Tensor:
    """New bins (R, num_samples + 1) whose edges are drawn from the piecewise-constant density that
    `weights` (R, S) put on `bins` (R, S + 1); `padding` is added to every weight first (the
    histogram padding of mip-NeRF and nerfstudio, so empty bins keep some samples).

    u is evenly spaced over [0, 1) (the strata's midpoints when not stratified; one jitter per
    stratum, or one per ray with `single_jitter`), so the new edges are stratified samples of the
    density: an edge lands in a bin with probability equal to the bin's share of the weight.
    """
    if bins.shape[-1] != weights.shape[-1] + 1:
        raise UserError(f"inverse_cdf_bins: {bins.shape[-1]} bin edges need {bins.shape[-1] - 1} weights, got "
                        f"{weights.shape[-1]}")
    weights = weights.detach() + padding
    total = weights.sum(-1, keepdim=True)
    # rays with no weight at all fall back to uniform
    pdf = torch.where(total > eps, weights / total.clamp_min(eps), torch.full_like(weights, 1.0 / weights.shape[-1]))
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, -1).clamp(max=1.0)], -1)
    cdf[..., -1] = 1.0
    n = num_samples + 1
    if stratified:
        shape = bins.shape[:-1] + ((1,) if single_jitter else (n,))
        jitter = torch.rand(shape, generator=generator, dtype=bins.dtype).to(bins.device)
        u = (torch.arange(n, device=bins.device, dtype=bins.dtype) + jitter) / n
    else:
        u = (torch.arange(n, device=bins.device, dtype=bins.dtype) + 0.5) / n
        u = u.expand(bins.shape[:-1] + (n,))
    u = u.clamp(0.0, 1.0 - 1e-7).contiguous()
    idx = torch.searchsorted(cdf.contiguous(), u, right=True)
    below = (idx - 1).clamp(0, bins.shape[-1] - 1)
    above = idx.clamp(0, bins.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)
    bin_lo, bin_hi = bins.gather(-1, below), bins.gather(-1, above)
    denom = cdf_hi - cdf_lo
    frac = torch.where(denom < eps, torch.zeros_like(denom), (u - cdf_lo) / denom.clamp_min(eps))
    return (bin_lo + frac * (bin_hi - bin_lo)).detach()


def sorted_union(bins_a: Tensor, bins_b: Tensor) -> Tensor:
    """The edges of both bin sets, sorted (NeRF's fine pass uses coarse and fine samples together)."""
    return torch.sort(torch.cat([bins_a, bins_b], -1), -1).values


DensityFn = Callable[[Tensor], Tensor]
"""Maps points (..., 3) to densities (..., 1) or (...,)."""


@dataclass
class ProposalSampler:
    """Proposal sampling: `num_proposal_samples[k]` samples for proposal network k, then
    `num_nerf_samples` for the field; bins live in the normalised `spacing` s in [0, 1]."""

    num_proposal_samples: Sequence[int] = (256, 96)
    """Samples of each proposal pass (nerfacto: 256 then 96)."""
    num_nerf_samples: int = 48
    """Samples given to the NeRF field in the end."""
    spacing: str = "uniform_disparity"
    """The spacing of the first uniform bins: linear, disparity or uniform_disparity."""
    single_jitter: bool = True
    """One jitter per ray (rather than per sample) in the resampling passes, as nerfstudio."""
    padding: float = 0.01
    """Histogram padding added to the weights before each resample."""

    def __call__(self, origins: Tensor, directions: Tensor, near: Tensor, far: Tensor,
                 density_fns: Sequence[DensityFn], anneal: float = 1.0, stratified: bool = False,
                 generator: torch.Generator | None = None) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """(final bins in t (R, N + 1), [bins in t of every pass], [weights of every proposal pass]).

        The proposal densities are computed with gradients (the interlevel loss trains them), the
        resampling is not differentiated. `anneal` raises the weights to that power before a
        resample (nerfstudio's proposal weight annealing).
        """
        from utils.rendering.volume_rendering import weights_from_density

        if len(density_fns) != len(self.num_proposal_samples):
            raise UserError(f"{len(self.num_proposal_samples)} proposal passes need as many density functions, "
                            f"got {len(density_fns)}")
        to_s, to_t = spacing_fns(self.spacing, near.reshape(-1, 1), far.reshape(-1, 1))
        s_bins = stratified_bins(torch.zeros_like(near.reshape(-1, 1)), torch.ones_like(near.reshape(-1, 1)),
                                 self.num_proposal_samples[0], stratified, generator)
        all_bins, all_weights = [], []
        weights = None
        for k, density_fn in enumerate(density_fns):
            if weights is not None:
                s_bins = inverse_cdf_bins(s_bins, weights.detach() ** anneal, self.num_proposal_samples[k],
                                          stratified, generator, self.padding, self.single_jitter)
            t_bins = to_t(s_bins)
            mids = bin_midpoints(t_bins)
            points = origins[:, None, :] + directions[:, None, :] * mids[..., None]
            sigma = density_fn(points).reshape(mids.shape)
            weights, _, _ = weights_from_density(t_bins[:, :-1], t_bins[:, 1:], sigma)
            all_bins.append(t_bins)
            all_weights.append(weights)
        if weights is not None:
            s_bins = inverse_cdf_bins(s_bins, weights.detach() ** anneal, self.num_nerf_samples, stratified,
                                      generator, self.padding, self.single_jitter)
        else:
            s_bins = stratified_bins(torch.zeros_like(near.reshape(-1, 1)), torch.ones_like(near.reshape(-1, 1)),
                                     self.num_nerf_samples, stratified, generator)
        t_bins = to_t(s_bins)
        all_bins.append(t_bins)
        return t_bins, all_bins, all_weights

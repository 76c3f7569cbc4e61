"""Densification strategies against gsplat's own (`gsplat.strategy.DefaultStrategy`, `MCMCStrategy`
and the ops in `gsplat.strategy.ops`), on the same inputs.

Both sides get the same parameters, the same Adam optimisers (with non-zero moments), the same
per-step gradients and rasterizer info dicts, and the same global seed before every hook; after a
run of steps that refines, prunes and resets (MCMC: relocates, adds, adds noise), the number of
Gaussians after every step must match exactly (which Gaussians are cloned, split, pruned,
relocated is discrete) and every parameter, Adam moment and statistic within 1e-5.

What runs where: gsplat's DefaultStrategy and its ops duplicate / split / remove / reset_opa are
plain torch and run here unchanged. Its MCMC ops call two compiled CUDA kernels, which this
machine cannot load (gsplat's `_C` extension is absent without CUDA):
- `gsplat.relocation.compute_relocation` (kernel `relocation`, eq. 9 of 3DGS-MCMC), used by
  `relocate` and `sample_add`: the MCMC comparison runs gsplat's ops with our
  `compute_relocation` in its place, and ours is tested against eq. 9 worked by hand and a
  term-by-term transcription of the kernel's loop (and against the kernel itself on a GPU);
- `gsplat.quat_scale_to_covar_preci` (kernel `quat_scale_to_covar_preci_fwd`), used by
  `inject_noise_to_position`: replaced by gsplat's own torch reference
  `gsplat.cuda._torch_impl._quat_scale_to_covar_preci` (which tests/utils/rendering compares
  with ours).
Everything else of gsplat's MCMC (dead masks, opacity-weighted sampling, bincount ratios, clamps,
parameter and optimiser surgery, the noise gate) runs as shipped.

One deliberate difference: gsplat 1.5.3 never resets opacities (its condition
`step % reset_every == 0 & step > 0` is a chained comparison that is always false); the paper
and ours reset every `reset_every` steps, so the gsplat side here applies gsplat's own
`reset_opa` at those steps (idempotent, so the test still holds once gsplat fixes it).
"""
from __future__ import annotations

import math

import pytest
import torch
from gsplat.strategy import DefaultStrategy as GsplatDefault
from gsplat.strategy import MCMCStrategy as GsplatMCMC
from gsplat.strategy import ops as gsplat_ops

from models.generation_3d.gaussian_splatting.model import SPLAT_KEYS
from models.generation_3d.gaussian_splatting.strategy import (DefaultStrategy, MCMCStrategy, Strategy, binomial_table,
                                                              compute_relocation, duplicate, make_strategy, relocate,
                                                              remove, reset_opa, sample_add, split)

LRS = {"means": 1.6e-4, "scales": 5e-3, "quats": 1e-3, "opacities": 5e-2, "sh0": 2.5e-3, "shN": 1.25e-4}
TOL = 1e-5


def _setup(n: int, seed: int = 0, opacity_range=(-7.0, 3.0)):
    """Parameters and one Adam per parameter after one step, so every moment row is distinct."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = opacity_range
    params = torch.nn.ParameterDict({
        "means": torch.randn(n, 3, generator=g), "scales": torch.randn(n, 3, generator=g) - 4.0,
        "quats": torch.randn(n, 4, generator=g), "opacities": torch.rand(n, generator=g) * (hi - lo) + lo,
        "sh0": torch.randn(n, 1, 3, generator=g), "shN": torch.randn(n, 3, 3, generator=g)})
    opts = {k: torch.optim.Adam([p], lr=LRS[k], eps=1e-15) for k, p in params.items()}
    _adam_step(params, opts, seed=seed + 1)
    return params, opts


def _adam_step(params, opts, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for k, p in params.items():
        p.grad = torch.randn(p.shape, generator=g) * 0.1
        opts[k].step()
        opts[k].zero_grad(set_to_none=True)


def _info(n: int, cameras: int, seed: int, width: int = 64, height: int = 48) -> dict:
    """A rasterizer info dict: screen-space gradients of the projected centres and radii (some culled)."""
    g = torch.Generator().manual_seed(seed)
    means2d = torch.zeros(cameras, n, 2, requires_grad=True)
    # gradient norms spread over 10^-7 .. 10^-4.5 around the 2e-4 NDC threshold, a few Gaussians above it
    means2d.grad = torch.randn(cameras, n, 2, generator=g) * 10 ** (-7 + 2.5 * torch.rand(1, n, 1, generator=g))
    radii = torch.randint(0, 12, (cameras, n, 2), generator=g, dtype=torch.int32)
    radii[torch.rand(cameras, n, generator=g) < 0.2] = 0
    return {"means2d": means2d, "radii": radii, "width": width, "height": height, "n_cameras": cameras,
            "gaussian_ids": None}


def _assert_same(ours, ref, ours_opts, ref_opts, ours_state=None, ref_state=None) -> None:
    for k in SPLAT_KEYS:
        assert ours[k].shape == ref[k].shape, k
        assert (ours[k] - ref[k]).abs().max() <= TOL, (k, (ours[k] - ref[k]).abs().max())
        st_o, st_r = ours_opts[k].state[ours[k]], ref_opts[k].state[ref[k]]
        assert ours_opts[k].param_groups[0]["params"][0] is ours[k]
        assert float(st_o["step"]) == float(st_r["step"]), k
        for m in ("exp_avg", "exp_avg_sq"):
            assert st_o[m].shape == ref[k].shape and (st_o[m] - st_r[m]).abs().max() <= TOL, (k, m)
    for key in ref_state or {}:
        if torch.is_tensor(ref_state[key]):
            assert torch.allclose(ours_state[key], ref_state[key], atol=TOL), key
        else:
            assert ours_state[key] == ref_state[key], key


def test_strategies_follow_the_protocol():
    for s in (DefaultStrategy(), MCMCStrategy(), make_strategy("default", 300), make_strategy("mcmc", 300)):
        assert isinstance(s, Strategy)
    params, opts = _setup(5)
    del opts["shN"]
    with pytest.raises(ValueError, match="optimiser"):
        DefaultStrategy().check_sanity(params, opts)


# -- the ops one by one -----------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["duplicate", "split", "split_revised", "remove", "reset_opa"])
def test_op_matches_gsplat(op):
    n = 37
    ours, ours_opts = _setup(n)
    ref, ref_opts = _setup(n)
    mask = torch.rand(n, generator=torch.Generator().manual_seed(3)) < 0.4
    stats = {"grad2d": torch.rand(n), "count": torch.arange(n, dtype=torch.float32), "scene_scale": 2.0}
    ours_state, ref_state = dict(stats), dict(stats)
    fn = {"duplicate": (duplicate, gsplat_ops.duplicate), "split": (split, gsplat_ops.split),
          "split_revised": (split, gsplat_ops.split), "remove": (remove, gsplat_ops.remove)}.get(op)
    for params, opts, state, impl in ((ours, ours_opts, ours_state, 0), (ref, ref_opts, ref_state, 1)):
        torch.manual_seed(11)
        if op == "reset_opa":
            (reset_opa, gsplat_ops.reset_opa)[impl](params, opts, state, value=0.01)
        elif op == "split_revised":
            fn[impl](params, opts, state, mask, revised_opacity=True)
        else:
            fn[impl](params, opts, state, mask)
    expected = {"duplicate": n + int(mask.sum()), "split": n + int(mask.sum()), "split_revised": n + int(mask.sum()),
                "remove": n - int(mask.sum()), "reset_opa": n}[op]
    assert len(ours["means"]) == expected
    _assert_same(ours, ref, ours_opts, ref_opts, ours_state, ref_state)


# -- whole strategies over many steps ---------------------------------------------------------------
def _run_default(strategy, impl: str, steps: int, cameras: int, n: int = 60):
    params, opts = _setup(n)
    state = strategy.initialize_state(scene_scale=0.5)
    counts, events = [], {}
    for step in range(steps):
        info = _info(len(params["means"]), cameras, seed=100 + step)
        strategy.step_pre_backward(params, opts, state, step, info)
        _adam_step(params, opts, seed=200 + step)
        torch.manual_seed(300 + step)
        if impl == "ours":
            for k, v in strategy.step_post_backward(params, opts, state, step, info).items():
                events[k] = events.get(k, 0) + v
        else:
            strategy.step_post_backward(params, opts, state, step, info, packed=False)
            if 0 < step < strategy.refine_stop_iter and step % strategy.reset_every == 0:
                gsplat_ops.reset_opa(params, opts, state, value=strategy.prune_opa * 2.0)
        counts.append(len(params["means"]))
    return params, opts, state, counts, events


@pytest.mark.parametrize("variant", ["paper", "screen_size"])
def test_default_strategy_matches_gsplat(variant):
    common = dict(prune_opa=0.005, grow_grad2d=2e-4, prune_scale3d=0.1, reset_every=6,
                  refine_every=3)
    if variant == "paper":
        extra, cameras = dict(grow_scale3d=0.01), 2
    else:  # screen-size rules, revised split opacity and a pause after resets; one camera (see below)
        extra, cameras = dict(grow_scale3d=0.05, refine_scale2d_stop_iter=16, grow_scale2d=0.12, prune_scale2d=0.2,
                              revised_opacity=True, pause_refine_after_reset=2), 1
    ours = DefaultStrategy(**common, **extra, refine_start=2, refine_stop=20)
    ref = GsplatDefault(**common, **extra, refine_start_iter=2, refine_stop_iter=20)
    p_o, o_o, s_o, c_o, events = _run_default(ours, "ours", 23, cameras)
    p_r, o_r, s_r, c_r, _ = _run_default(ref, "gsplat", 23, cameras)
    assert c_o == c_r  # the same number of Gaussians after every step (and below, the same ones)
    assert all(events.get(k, 0) > 0 for k in ("cloned", "split", "pruned", "reset")), events
    # gsplat keeps the largest radius per camera with an indexed write (last camera wins), ours with
    # a true max over cameras: with one camera the two are the same statistic
    _assert_same(p_o, p_r, o_o, o_r, s_o, s_r)


def _run_mcmc(strategy, impl: str, steps: int, n: int = 40):
    params, opts = _setup(n, opacity_range=(-8.0, 2.0))
    state = strategy.initialize_state()
    counts, relocated = [], 0
    for step in range(steps):
        info = _info(len(params["means"]), 1, seed=100 + step)
        _adam_step(params, opts, seed=200 + step)
        lr = 1.6e-4 * 0.9 ** step
        torch.manual_seed(300 + step)
        dead = int((torch.sigmoid(params["opacities"]) <= strategy.min_opacity).sum())
        strategy.step_post_backward(params, opts, state, step, info, lr=lr)
        if step % strategy.refine_every == 0 and 1 < step < 12:
            relocated += dead
        counts.append(len(params["means"]))
    return params, opts, counts, relocated


def test_mcmc_strategy_matches_gsplat(monkeypatch):
    from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci

    monkeypatch.setattr(gsplat_ops, "compute_relocation", compute_relocation)  # its CUDA kernel: see the docstring
    monkeypatch.setattr(gsplat_ops, "quat_scale_to_covar_preci", _quat_scale_to_covar_preci)
    ours = MCMCStrategy(cap_max=48, refine_start=1, refine_stop=12, refine_every=2)
    ref = GsplatMCMC(cap_max=48, refine_start_iter=1, refine_stop_iter=12, refine_every=2)
    p_o, o_o, c_o, relocated = _run_mcmc(ours, "ours", 14)
    p_r, o_r, c_r, _ = _run_mcmc(ref, "gsplat", 14)
    assert c_o == c_r and c_o[-1] == 48 and relocated > 0
    _assert_same(p_o, p_r, o_o, o_r)


@pytest.mark.parametrize("op", ["relocate", "sample_add"])
def test_mcmc_ops_match_gsplat(monkeypatch, op):
    monkeypatch.setattr(gsplat_ops, "compute_relocation", compute_relocation)
    n = 30
    ours, ours_opts = _setup(n, opacity_range=(-8.0, 2.0))
    ref, ref_opts = _setup(n, opacity_range=(-8.0, 2.0))
    dead = torch.sigmoid(ours["opacities"]) <= 0.005
    assert 0 < int(dead.sum()) < n
    for params, opts, fn in ((ours, ours_opts, (relocate, sample_add)), (ref, ref_opts, (gsplat_ops.relocate,
                                                                                          gsplat_ops.sample_add))):
        torch.manual_seed(5)
        if op == "relocate":
            fn[0](params, opts, {}, dead, binomial_table(), 0.005)
        else:
            fn[1](params, opts, {}, 9, binomial_table(), 0.005)
    assert len(ours["means"]) == (n if op == "relocate" else n + 9)
    _assert_same(ours, ref, ours_opts, ref_opts)


# -- eq. 9 (the CUDA kernel's formula) -------------------------------------------------------------
def test_relocation_by_hand():
    """Eq. 9 worked out by hand for 1, 2 and 3 copies of a Gaussian of opacity 0.5:
    n = 1: o' = o, s' = s; n = 2: o' = 1 - 1/sqrt(2), denominator 2o' - o'^2/sqrt(2);
    n = 3: o' = 1 - 0.5^(1/3), denominator 3o' - 3o'^2/sqrt(2) + o'^3/sqrt(3)."""
    o2, o3 = 1 - 1 / math.sqrt(2), 1 - 0.5 ** (1 / 3)
    d2 = 2 * o2 - o2 ** 2 / math.sqrt(2)
    d3 = 3 * o3 - 3 * o3 ** 2 / math.sqrt(2) + o3 ** 3 / math.sqrt(3)
    assert abs(o2 - 0.2928932) < 1e-7 and abs(0.5 / d2 - 0.9521513) < 1e-6  # the numbers, written out
    scales = torch.tensor([[0.1, 0.2, 0.3]]).repeat(3, 1)
    new_op, new_sc = compute_relocation(torch.full((3,), 0.5), scales, torch.tensor([1, 2, 3]), binomial_table())
    assert torch.allclose(new_op, torch.tensor([0.5, o2, o3]), atol=1e-7)
    assert torch.allclose(new_sc, scales * torch.tensor([1.0, 0.5 / d2, 0.5 / d3])[:, None], atol=1e-7)
    # n copies of opacity o' composite back to the original opacity
    assert abs(1 - (1 - o3) ** 3 - 0.5) < 1e-12


def _kernel_loop(o: float, s: float, n: int, binoms: list[list[int]]) -> tuple[float, float]:
    """The relocation kernel's per-Gaussian loop, term by term, in Python floats."""
    new_o = 1 - (1 - o) ** (1 / n)
    denom = sum(binoms[i - 1][k] * (-1) ** k / math.sqrt(k + 1) * new_o ** (k + 1)
                for i in range(1, n + 1) for k in range(i))
    return new_o, s * o / denom


def test_relocation_matches_the_kernel_loop():
    g = torch.Generator().manual_seed(0)
    op = torch.rand(200, generator=g) * 0.85 + 0.01
    sc = torch.rand(200, 3, generator=g) + 0.05
    ratios = torch.randint(1, 60, (200,), generator=g)  # above n_max = 51 clamps to 51, as the kernel's caller does
    table = [[math.comb(n, k) for k in range(51)] for n in range(51)]
    new_op, new_sc = compute_relocation(op, sc, ratios, binomial_table())
    for j in range(200):
        ref_o, ref_s = _kernel_loop(float(op[j]), float(sc[j, 0]), min(int(ratios[j]), 51), table)
        assert abs(float(new_op[j]) - ref_o) <= 1e-6 and abs(float(new_sc[j, 0]) - ref_s) <= 1e-5 * max(1, ref_s), j


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_relocation_matches_gsplat_kernel():
    from gsplat.relocation import compute_relocation as kernel

    g = torch.Generator().manual_seed(0)
    op = torch.rand(500, generator=g) * 0.85 + 0.01
    sc = torch.rand(500, 3, generator=g) + 0.05
    ratios = torch.randint(1, 52, (500,), generator=g, dtype=torch.int32)
    ours = compute_relocation(op, sc, ratios, binomial_table())
    ref = kernel(op.cuda(), sc.cuda(), ratios.cuda(), binomial_table().cuda())
    assert torch.allclose(ours[0], ref[0].cpu(), atol=1e-5) and torch.allclose(ours[1], ref[1].cpu(), rtol=1e-4)


# -- the strategies' own rules ------------------------------------------------------------------------
def test_mcmc_relocates_dead_and_grows():
    params, opts = _setup(40, opacity_range=(0.0, 3.0))
    with torch.no_grad():
        params["opacities"][:10] = -10.0  # dead
    strat = MCMCStrategy(cap_max=100, refine_start=0, refine_every=1)
    state = strat.initialize_state()
    out = strat.step_post_backward(params, opts, state, step=5, info={}, lr=1e-4)
    assert out["relocated"] == 10 and out["added"] == 2 and len(params["means"]) == 42
    assert (torch.sigmoid(params["opacities"]) > strat.min_opacity).all()


def test_default_cap_keeps_the_strongest_gradients():
    params, opts = _setup(20)
    strat = DefaultStrategy(refine_start=0, refine_every=1, max_gaussians=23, grow_grad2d=0.0)
    state = strat.initialize_state(scene_scale=1.0)
    state["grad2d"], state["count"] = torch.arange(20, dtype=torch.float32) + 1, torch.ones(20)
    before = params["means"].detach().clone()
    torch.manual_seed(0)
    out = strat._grow(params, opts, state, step=1)
    assert out["cloned"] + out["split"] == 3 and len(params["means"]) == 23
    # only the three highest gradients (Gaussians 17-19) grew: cloned ones appear twice, split ones
    # were replaced by two children; every other Gaussian is there once, untouched
    times = [int((params["means"] == m).all(-1).sum()) for m in before]
    assert times[:17] == [1] * 17 and all(t in (0, 2) for t in times[17:])


def test_strategy_ops_keep_optimizer_aligned():
    params, opts = _setup(30)
    state = {"grad2d": torch.arange(30, dtype=torch.float32), "count": torch.ones(30), "scene_scale": 1.0}
    mask = torch.zeros(30, dtype=torch.bool)
    mask[[1, 5, 7]] = True
    before = params["means"].detach().clone()
    duplicate(params, opts, state, mask)
    assert len(params["means"]) == 33 and torch.equal(params["means"][30:], before[[1, 5, 7]])
    assert torch.equal(state["grad2d"][30:], torch.tensor([1.0, 5.0, 7.0]))  # clones carry their statistics
    for k, p in params.items():
        st = opts[k].state[p]
        assert st["exp_avg"].shape == p.shape and (st["exp_avg"][30:] == 0).all()
        assert opts[k].param_groups[0]["params"][0] is p
    split(params, opts, state, torch.arange(33) < 2)
    assert len(params["means"]) == 35
    assert torch.allclose(params["scales"][-1], params["scales"][-3]) and state["grad2d"].shape == (35,)
    remove(params, opts, state, torch.arange(35) >= 20)
    assert len(params["means"]) == 20 and all(opts[k].state[p]["exp_avg_sq"].shape == p.shape
                                              for k, p in params.items())
    assert state["scene_scale"] == 1.0 and state["count"].shape == (20,)


def test_relocation_preserves_a_single_copy_and_shrinks_many():
    op = torch.tensor([0.3, 0.8, 0.95])
    sc = torch.rand(3, 3) + 0.1
    new_op, new_sc = compute_relocation(op, sc, torch.ones(3, dtype=torch.int32), binomial_table())
    assert torch.allclose(new_op, op) and torch.allclose(new_sc, sc, atol=1e-6)
    new_op, new_sc = compute_relocation(op, sc, torch.full((3,), 4, dtype=torch.int32), binomial_table())
    # four copies of opacity o' composite to the original opacity
    assert torch.allclose(1 - (1 - new_op) ** 4, op, atol=1e-6)
    assert (new_op < op).all()

"""The sampling loop: concurrency without shared state, callbacks, interrupts, guidance, img2img, names."""
from __future__ import annotations

import threading

import pytest
import torch

from utils.diffusion import (InpaintBlend, blend, cfg_combine, cfg_model, distilled_guidance_model, flux_mu,
                             get_scheduler, img2img_latents, img2img_start, initial_noise, rescale_guidance, sample,
                             scheduler_from_diffusers_config, scheduler_names)
from utils.diffusion.noise import generators
from utils.torch_utils import randn
from utils.errors import UserError


def model(x, t):
    tv = torch.as_tensor(t).reshape(-1)[0].float()
    return 0.5 * torch.tanh(x) + 0.1 * x * torch.cos(tv / 300.0)


SHAPE = (1, 4, 8, 8)


@pytest.mark.parametrize("name", ["euler-a", "dpm++2m-sde-karras", "heun", "ddpm", "lcm", "dpm++2m-karras"])
def test_interleaved_runs_equal_sequential(name):
    """Two requests stepping alternately through one scheduler give the same results as run alone."""
    sched = get_scheduler(name)
    sch = sched.schedule(6)
    x_a = initial_noise(SHAPE, 1, init_sigma=sch.init_noise_sigma)
    x_b = initial_noise(SHAPE, 2, init_sigma=sch.init_noise_sigma)
    seq_a = sample(model, sched, sch, x_a, generator=torch.Generator().manual_seed(10), progress=False)
    seq_b = sample(model, sched, sch, x_b, generator=torch.Generator().manual_seed(20), progress=False)

    runs = [[x_a, None, torch.Generator().manual_seed(10)], [x_b, None, torch.Generator().manual_seed(20)]]
    for i in range(len(sch.timesteps)):
        for run in runs:  # interleave step by step
            x, state, gen = run
            out = model(sched.scale_model_input(x, i, sch), sch.timesteps[i])
            res = sched.step(out, x, i, sch, generator=gen, state=state)
            run[0], run[1] = res.prev_sample, res.state
    assert torch.equal(runs[0][0], seq_a) and torch.equal(runs[1][0], seq_b)
    assert not torch.equal(seq_a, seq_b)


def test_threads_share_one_scheduler():
    sched = get_scheduler("dpm++2m-sde-karras")
    sch = sched.schedule(8)
    xs = {s: initial_noise(SHAPE, s, init_sigma=sch.init_noise_sigma) for s in range(4)}
    want = {s: sample(model, sched, sch, xs[s], generator=torch.Generator().manual_seed(s), progress=False)
            for s in xs}
    got = {}

    def run(s):
        got[s] = sample(model, sched, sch, xs[s], generator=torch.Generator().manual_seed(s), progress=False)

    threads = [threading.Thread(target=run, args=(s,)) for s in xs]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert all(torch.equal(got[s], want[s]) for s in xs)


def test_callback_can_replace_latents_and_interrupt_stops():
    sched = get_scheduler("euler")
    sch = sched.schedule(5)
    x = initial_noise(SHAPE, 0, init_sigma=sch.init_noise_sigma)
    seen = []

    def cb(info):
        seen.append(info.i)
        return torch.zeros_like(info.latents) if info.i == 4 else None

    out = sample(model, sched, sch, x, callback=cb, progress=False)
    assert seen == [0, 1, 2, 3, 4] and torch.equal(out, torch.zeros_like(out))

    ev = threading.Event()
    res = sample(model, sched, sch, x, callback=lambda info: ev.set() if info.i == 1 else None, interrupt=ev,
                 progress=False, return_result=True)
    assert res.interrupted and res.steps_done == 2
    res = sample(model, sched, sch, x, interrupt=lambda: True, progress=False, return_result=True)
    assert res.interrupted and res.steps_done == 0 and torch.equal(res.latents, x)


def test_progress_bar_shown_and_hidden(capsys):
    sched = get_scheduler("ddim")
    sch = sched.schedule(3)
    sample(model, sched, sch, torch.zeros(SHAPE), progress=True)
    err = capsys.readouterr().err
    assert "sampling" in err and "/3" in err  # a bar over the 3 steps, on stderr
    sample(model, sched, sch, torch.zeros(SHAPE), progress=False)
    assert capsys.readouterr().err == ""
    # a run that resumes at step 1 counts the 2 steps it runs
    sample(model, sched, sch, torch.zeros(SHAPE), start=1, progress=True)
    assert "/2" in capsys.readouterr().err


def test_noise_is_seeded_and_per_sample():
    a = initial_noise((2, 4, 8, 8), 5)
    b = initial_noise((2, 4, 8, 8), 5)
    assert torch.equal(a, b)
    # a seed means seed + i for image i: image 1 of seed 5 is image 0 of seed 6
    assert torch.equal(a[1:], initial_noise((1, 4, 8, 8), 6))
    assert [int(g.initial_seed()) for g in generators(5, 3)] == [5, 6, 7]
    with pytest.raises(UserError, match="2 seeds for 3 images"):
        generators([1, 2], 3)
    gens = generators([3, 4])
    batch = randn((2, 4, 8, 8), gens)
    single = randn((1, 4, 8, 8), generators(4))
    assert torch.equal(batch[1:], single)
    assert torch.equal(randn((1, 2), torch.Generator().manual_seed(0)), torch.randn((1, 2), generator=torch.Generator().manual_seed(0)))


# -- guidance ---------------------------------------------------------------------------------------

def test_cfg_batched_equals_sequential_and_formula():
    def net(x, t, emb):
        return x * emb.reshape(-1, 1, 1, 1) + t.reshape(-1, 1, 1, 1).float() / 1000

    x = torch.randn(2, 4, 3, 3)
    t = torch.full((2,), 500.0)
    cond, uncond = {"emb": torch.tensor([2.0, 3.0])}, {"emb": torch.tensor([0.5, 0.5])}
    batched = cfg_model(net, cond, uncond, 7.5)(x, t)
    seq = cfg_model(net, cond, uncond, 7.5, batched=False)(x, t)
    ref = cfg_combine(net(x, t, **uncond), net(x, t, **cond), 7.5)
    assert (batched - ref).abs().max() <= 1e-5 and (seq - ref).abs().max() <= 1e-5
    assert torch.equal(cfg_model(net, cond, uncond, 1.0)(x, t), net(x, t, **cond))


@pytest.mark.slow  # importing the SD pipeline module pulls in transformers (~15 s)
def test_guidance_rescale_vs_diffusers():
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    g = torch.Generator().manual_seed(0)
    cond, guided = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g) * 3
    for r in (0.0, 0.3, 0.7):
        ref = rescale_noise_cfg(guided, cond, guidance_rescale=r)
        assert (rescale_guidance(guided, cond, r) - ref).abs().max() <= 1e-5


def test_guidance_rescale_restores_cond_std():
    g = torch.Generator().manual_seed(0)
    cond, guided = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g) * 3
    full = rescale_guidance(guided, cond, 1.0)
    assert torch.allclose(full.std(dim=(1, 2, 3)), cond.std(dim=(1, 2, 3)), atol=1e-5)
    assert torch.equal(rescale_guidance(guided, cond, 0.0), guided)
    half = rescale_guidance(guided, cond, 0.5)
    assert torch.allclose(half, 0.5 * full + 0.5 * guided, atol=1e-6)


def test_distilled_guidance_passthrough():
    seen = {}

    def net(x, t, guidance, txt):
        seen["g"], seen["txt"] = guidance, txt
        return x

    distilled_guidance_model(net, 3.5, txt="hello")(torch.zeros(2, 1), torch.zeros(2))
    assert torch.equal(seen["g"], torch.tensor([3.5, 3.5])) and seen["txt"] == "hello"


# -- img2img / inpainting ---------------------------------------------------------------------------

def test_img2img_start_matches_diffusers_rule():
    assert img2img_start(50, 0.8) == 10
    assert img2img_start(50, 1.0) == 0
    assert img2img_start(50, 0.0) == 50
    assert img2img_start(10, 0.5, order=2) == 10
    with pytest.raises(UserError):
        img2img_start(10, 1.5)


@pytest.mark.parametrize("cls_name,name", [("DDIMScheduler", "ddim"), ("EulerDiscreteScheduler", "euler"),
                                           ("FlowMatchEulerDiscreteScheduler", "flow-euler")])
def test_add_noise_vs_diffusers(cls_name, name):
    import diffusers

    ref = getattr(diffusers, cls_name)()
    ref.set_timesteps(10)
    ours = get_scheduler(name)
    sch = ours.schedule(10)
    x0, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    start = img2img_start(10, 0.6)
    t = ref.timesteps[start:start + 1].repeat(2)
    if name == "flow-euler":
        want = ref.scale_noise(x0, t, noise)
    else:
        want = ref.add_noise(x0, noise, t)
    got = img2img_latents(ours, sch, x0, noise, start)
    assert (got - want).abs().max() <= 1e-5


def test_inpaint_blend_keeps_known_region():
    sched = get_scheduler("ddim")
    sch = sched.schedule(6)
    init = torch.randn(1, 4, 8, 8)
    noise = torch.randn(1, 4, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:] = 1
    out = sample(model, sched, sch, noise.clone(), inpaint=InpaintBlend(init, mask, noise), progress=False)
    assert torch.equal(out[..., :4], init[..., :4])
    assert not torch.equal(out[..., 4:], init[..., 4:])
    assert torch.equal(blend(torch.ones(1, 1, 2), torch.zeros(1, 1, 2), torch.tensor([[[1.0, 0.0]]])),
                       torch.tensor([[[1.0, 0.0]]]))


# -- construction -----------------------------------------------------------------------------------

def test_get_scheduler_names_and_errors():
    for name in scheduler_names():
        assert len(get_scheduler(name).schedule(4).timesteps) >= 4
    with pytest.raises(UserError, match="dpm\\+\\+2m-karras"):
        get_scheduler("dpm++2m-karas")
    sdxl = {"_class_name": "EulerDiscreteScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
            "beta_end": 0.012, "timestep_spacing": "leading", "steps_offset": 1, "prediction_type": "epsilon"}
    s = get_scheduler("dpm++2m-karras", sdxl)
    assert s.use_karras_sigmas and s.beta_schedule == "scaled_linear" and s.steps_offset == 1
    with pytest.raises(UserError, match="unsupported diffusers scheduler"):
        scheduler_from_diffusers_config({"_class_name": "PNDMScheduler"})


def test_flux_mu_matches_diffusers():
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    for n in (256, 1024, 4096, 6000):
        assert abs(flux_mu(n) - calculate_shift(n, 256, 4096, 0.5, 1.15)) < 1e-9
    assert abs(flux_mu(256) - 0.5) < 1e-9 and abs(flux_mu(4096) - 1.15) < 1e-9
    sched = scheduler_from_diffusers_config({"_class_name": "FlowMatchEulerDiscreteScheduler",
                                             "use_dynamic_shifting": True})
    with pytest.raises(UserError, match="mu"):
        sched.schedule(4)
    a = sched.schedule(4, image_seq_len=1024)
    b = sched.schedule(4, mu=flux_mu(1024))
    assert torch.equal(a.sigmas, b.sigmas)


def test_frozen_config():
    s = get_scheduler("euler")
    with pytest.raises(Exception):
        s.beta_start = 0.1  # type: ignore[misc]
    assert s.replace(use_karras_sigmas=True).use_karras_sigmas

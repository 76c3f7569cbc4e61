"""Every scheduler against its diffusers twin over whole sampling trajectories of a fake denoiser."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import diffusers
from utils.diffusion import sample, scheduler_from_diffusers_config
from utils.torch_utils import randn

TOL = 1e-5
STEPS = (1, 4, 25)


def fake_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in for a network: smooth in x, varies with the timestep."""
    tv = torch.as_tensor(t).reshape(-1)[0].float()
    return 0.5 * torch.tanh(x) + 0.1 * x * torch.cos(tv / 300.0)


SD = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
SVD_EULER = {"_class_name": "EulerDiscreteScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
             "beta_end": 0.012, "interpolation_type": "linear", "num_train_timesteps": 1000,
             "prediction_type": "v_prediction", "sigma_max": 700.0, "sigma_min": 0.002, "steps_offset": 1,
             "timestep_spacing": "leading", "timestep_type": "continuous", "use_karras_sigmas": True,
             "trained_betas": None, "set_alpha_to_one": False, "skip_prk_steps": True, "clip_sample": False}

# (case id, diffusers class, config, diffusers step kwargs (ours go in the config), schedule kwargs)
CASES = [
    ("ddpm", "DDPMScheduler", {}, {}, {}),
    ("ddpm-v-trailing", "DDPMScheduler", {**SD, "prediction_type": "v_prediction", "timestep_spacing": "trailing",
                                          "clip_sample": False}, {}, {}),
    ("ddpm-threshold-linspace-large", "DDPMScheduler", {"thresholding": True, "timestep_spacing": "linspace",
                                                        "variance_type": "fixed_large", "sample_max_value": 1.5}, {}, {}),
    ("ddim", "DDIMScheduler", {**SD, "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1}, {}, {}),
    ("ddim-v-trailing-zsnr", "DDIMScheduler", {**SD, "prediction_type": "v_prediction", "timestep_spacing": "trailing",
                                               "rescale_betas_zero_snr": True, "clip_sample": False}, {}, {}),
    ("ddim-eta", "DDIMScheduler", {"clip_sample": True, "timestep_spacing": "linspace", "eta": 0.7}, {"eta": 0.7}, {}),
    ("euler", "EulerDiscreteScheduler", {}, {}, {}),
    ("euler-sd-leading", "EulerDiscreteScheduler", {**SD, "timestep_spacing": "leading", "steps_offset": 1}, {}, {}),
    ("euler-karras-v-trailing", "EulerDiscreteScheduler", {**SD, "use_karras_sigmas": True,
                                                           "prediction_type": "v_prediction",
                                                           "timestep_spacing": "trailing"}, {}, {}),
    ("euler-svd", "EulerDiscreteScheduler", SVD_EULER, {}, {}),
    ("euler-churn", "EulerDiscreteScheduler", {**SD, "s_churn": 0.5}, {"s_churn": 0.5}, {}),
    ("euler-loglinear-sigma-min", "EulerDiscreteScheduler", {"interpolation_type": "log_linear",
                                                             "final_sigmas_type": "sigma_min"}, {}, {}),
    ("euler-a", "EulerAncestralDiscreteScheduler", {**SD}, {}, {}),
    ("euler-a-v-leading", "EulerAncestralDiscreteScheduler", {"prediction_type": "v_prediction",
                                                              "timestep_spacing": "leading", "steps_offset": 1}, {}, {}),
    ("heun", "HeunDiscreteScheduler", {}, {}, {}),
    ("heun-karras-v", "HeunDiscreteScheduler", {**SD, "use_karras_sigmas": True, "prediction_type": "v_prediction"},
     {}, {}),
    ("heun-trailing-clip", "HeunDiscreteScheduler", {"timestep_spacing": "trailing", "clip_sample": True}, {}, {}),
    ("dpm++2m", "DPMSolverMultistepScheduler", {**SD}, {}, {}),
    ("dpm++2m-karras", "DPMSolverMultistepScheduler", {**SD, "use_karras_sigmas": True}, {}, {}),
    ("dpm++2m-karras-v-heun", "DPMSolverMultistepScheduler", {**SD, "use_karras_sigmas": True,
                                                              "prediction_type": "v_prediction",
                                                              "solver_type": "heun", "timestep_spacing": "trailing"},
     {}, {}),
    ("dpm++2m-sde-karras", "DPMSolverMultistepScheduler", {**SD, "use_karras_sigmas": True,
                                                           "algorithm_type": "sde-dpmsolver++"}, {}, {}),
    ("dpm++2m-sde-heun-leading", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++",
                                                                 "solver_type": "heun", "timestep_spacing": "leading",
                                                                 "steps_offset": 1}, {}, {}),
    ("dpm++2m-no-lower-final-sigma-min", "DPMSolverMultistepScheduler", {**SD, "lower_order_final": False,
                                                                         "final_sigmas_type": "sigma_min"}, {}, {}),
    ("dpm++1-euler-final", "DPMSolverMultistepScheduler", {"solver_order": 1, "euler_at_final": True,
                                                           "thresholding": True}, {}, {}),
    ("lcm", "LCMScheduler", {}, {}, {}),
    ("lcm-v-trailing", "LCMScheduler", {"prediction_type": "v_prediction", "timestep_spacing": "trailing"}, {}, {}),
    ("flow-sd3", "FlowMatchEulerDiscreteScheduler", {"shift": 3.0}, {}, {}),
    ("flow-flux", "FlowMatchEulerDiscreteScheduler", {"use_dynamic_shifting": True, "base_shift": 0.5,
                                                      "max_shift": 1.15, "base_image_seq_len": 256,
                                                      "max_image_seq_len": 4096, "shift": 3.0},
     {}, {"flux_seq_len": 4096}),
    ("flow-flux-linear-shift-terminal", "FlowMatchEulerDiscreteScheduler",
     {"use_dynamic_shifting": True, "time_shift_type": "linear", "shift_terminal": 0.02}, {}, {"mu": 1.3}),
    ("flow-stochastic", "FlowMatchEulerDiscreteScheduler", {"shift": 2.0, "stochastic_sampling": True}, {}, {}),
    ("edm-euler", "EDMEulerScheduler", {}, {}, {}),
    ("edm-euler-v-exp-churn", "EDMEulerScheduler", {"prediction_type": "v_prediction",
                                                     "sigma_schedule": "exponential", "s_churn": 0.7,
                                                     "sigma_max": 700.0}, {"s_churn": 0.7}, {}),
]


def _diffusers_run(cls_name, config, n, x0, seed, step_kwargs, sched_kwargs):
    cls = getattr(diffusers, cls_name)
    names = set(inspect.signature(cls.__init__).parameters)
    sched = cls.from_config({k: v for k, v in config.items() if k in names})
    set_kw = {}
    if "flux_seq_len" in sched_kwargs:
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        set_kw["mu"] = calculate_shift(sched_kwargs["flux_seq_len"], 256, 4096, 0.5, 1.15)
        set_kw["sigmas"] = np.linspace(1.0, 1 / n, n)
        sched.set_timesteps(device="cpu", **set_kw)
    else:
        if "mu" in sched_kwargs:
            set_kw["mu"] = sched_kwargs["mu"]
        sched.set_timesteps(n, device="cpu", **set_kw)
    g = torch.Generator().manual_seed(seed)
    x = x0 * getattr(sched, "init_noise_sigma", 1.0)
    accepts_gen = "generator" in inspect.signature(sched.step).parameters
    for t in sched.timesteps:
        inp = sched.scale_model_input(x, t) if hasattr(sched, "scale_model_input") else x
        out = fake_model(inp, t)
        kw = {"generator": g} if accepts_gen else {}
        x = sched.step(out, t, x, return_dict=False, **kw, **step_kwargs)[0]
    return sched, x


def _ours(cls_name, config, n, sched_kwargs):
    ours = scheduler_from_diffusers_config({**config, "_class_name": cls_name})
    kw = {}
    if "flux_seq_len" in sched_kwargs:
        kw = {"image_seq_len": sched_kwargs["flux_seq_len"], "sigmas": np.linspace(1.0, 1 / n, n)}
    elif "mu" in sched_kwargs:
        kw = {"mu": sched_kwargs["mu"]}
    return ours, ours.schedule(n, **kw)


@pytest.mark.parametrize("n", STEPS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_trajectory_matches_diffusers(case, n):
    _, cls_name, config, step_kwargs, sched_kwargs = case
    if n == 1 and config.get("shift_terminal"):
        # diffusers divides by zero stretching a one-step schedule to shift_terminal (NaN sigmas);
        # there is nothing to compare with, so check that ours stays finite and ends at zero noise
        ours, schedule = _ours(cls_name, config, n, sched_kwargs)
        assert torch.isfinite(schedule.sigmas).all() and float(schedule.sigmas[-1]) == 0.0
        x = randn((2, 4, 6, 6), torch.Generator().manual_seed(7)) * schedule.init_noise_sigma
        got = sample(fake_model, ours, schedule, x, generator=torch.Generator().manual_seed(11), progress=False)
        assert torch.isfinite(got).all()
        return
    x0 = randn((2, 4, 6, 6), torch.Generator().manual_seed(7))
    ref_sched, ref = _diffusers_run(cls_name, config, n, x0, 11, step_kwargs, sched_kwargs)
    ours, schedule = _ours(cls_name, config, n, sched_kwargs)
    assert torch.equal(schedule.timesteps.to(ref_sched.timesteps.dtype), ref_sched.timesteps) or \
        (schedule.timesteps.double() - ref_sched.timesteps.double()).abs().max() <= 1e-4
    if schedule.sigmas is not None and hasattr(ref_sched, "sigmas"):
        assert (schedule.sigmas - ref_sched.sigmas.float()).abs().max() <= 1e-5 * max(1.0, float(schedule.sigmas.max()))
    x = x0 * schedule.init_noise_sigma
    got = sample(fake_model, ours, schedule, x, generator=torch.Generator().manual_seed(11), progress=False)
    assert got.shape == ref.shape
    scale = max(1.0, float(ref.abs().max()))
    assert (got - ref).abs().max() <= TOL * scale, f"max abs diff {(got - ref).abs().max():.3g}"

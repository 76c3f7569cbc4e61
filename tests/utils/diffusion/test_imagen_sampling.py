"""Imagen's sampling pieces: dynamic thresholding against the paper's formula, the learned-variance DDPM
schedule of DeepFloyd IF against diffusers, and guidance of the noise channels only."""
from __future__ import annotations

import numpy as np
import torch
from diffusers import DDPMScheduler

from utils.diffusion import DDPM, cfg_model, sample, scheduler_from_diffusers_config
from utils.diffusion.thresholding import dynamic_threshold

IF_STAGE_I = {"_class_name": "DDPMScheduler", "variance_type": "learned_range", "beta_schedule": "squaredcos_cap_v2",
              "prediction_type": "epsilon", "thresholding": True, "dynamic_thresholding_ratio": 0.95,
              "sample_max_value": 1.5}


def paper_threshold(x0: np.ndarray, p: float) -> np.ndarray:
    """Saharia et al. 2022, sec. 2.3 and fig. A.9: s = max(1, percentile(|x0|, p)); x0 <- clip(x0, -s, s) / s."""
    out = np.empty_like(x0)
    for i, x in enumerate(x0):
        s = max(1.0, float(np.percentile(np.abs(x), 100 * p)))
        out[i] = np.clip(x, -s, s) / s
    return out


def test_dynamic_thresholding_is_the_papers_formula_on_known_predictions():
    x0 = np.stack([np.linspace(-3, 3, 48).reshape(3, 4, 4),     # saturated: s = 2.9375..., rescaled
                   np.linspace(-0.5, 0.5, 48).reshape(3, 4, 4),  # inside [-1, 1]: s = 1, unchanged
                   np.full((3, 4, 4), 5.0)]).astype(np.float32)  # constant: s = 5, all become 1
    ours = dynamic_threshold(torch.from_numpy(x0), 0.95).numpy()
    np.testing.assert_allclose(ours, paper_threshold(x0, 0.95), atol=1e-6)
    np.testing.assert_allclose(ours[1], x0[1])
    np.testing.assert_allclose(ours[2], 1.0)
    s0 = np.percentile(np.abs(x0[0]), 95)
    assert abs(ours[0].max() - 3 / s0 * (s0 / 3 if s0 < 3 else 1)) < 1e-6 and abs(ours[0]).max() <= 1.0
    capped = dynamic_threshold(torch.from_numpy(x0), 0.95, max_value=1.5).numpy()
    np.testing.assert_allclose(capped[2], np.clip(x0[2], -1.5, 1.5) / 1.5)  # diffusers' sample_max_value cap
    assert dynamic_threshold(torch.from_numpy(x0).half(), 0.95).dtype == torch.float16


def _model(x, t):
    # a fixed nonlinear "network" that predicts noise and a variance fraction in [-1, 1]
    tt = t.float().reshape(-1, 1, 1, 1) / 1000
    return torch.cat([torch.sin(3 * x + tt), torch.tanh(x * tt - 0.3)], dim=1)


def test_learned_range_ddpm_trajectory_matches_diffusers():
    ours = scheduler_from_diffusers_config(IF_STAGE_I)
    assert isinstance(ours, DDPM) and ours.variance_type == "learned_range"
    ref = DDPMScheduler.from_config({k: v for k, v in IF_STAGE_I.items() if k != "_class_name"})
    for steps in (1, 4, 25):
        x0 = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(steps))
        ref.set_timesteps(steps)
        x, g = x0.clone(), torch.Generator().manual_seed(11)
        for t in ref.timesteps:
            x = ref.step(_model(x, t.expand(2)), t, x, generator=g).prev_sample
        schedule = ours.schedule(steps)
        assert torch.equal(schedule.timesteps, ref.timesteps)
        mine = sample(_model, ours, schedule, x0.clone(), generator=torch.Generator().manual_seed(11), progress=False)
        assert (mine - x).abs().max().item() < 1e-5, steps


def test_guidance_combines_the_noise_channels_and_keeps_the_conditional_variance():
    def model(x, t, c):
        return torch.cat([x * c, x + c], dim=1)

    x = torch.randn(1, 3, 4, 4)
    cond, uncond = {"c": torch.full((1, 1, 1, 1), 2.0)}, {"c": torch.full((1, 1, 1, 1), 1.0)}
    guided = cfg_model(model, cond, uncond, scale=4.0, learned_variance=True)(x, torch.tensor([10]))
    assert torch.allclose(guided[:, :3], x * 1 + 4 * (x * 2 - x * 1))
    assert torch.allclose(guided[:, 3:], x + 2)  # the conditional branch's variance, unguided
    plain = cfg_model(model, cond, uncond, scale=4.0)(x, torch.tensor([10]))
    assert torch.allclose(plain[:, 3:], x + 5)  # without the flag every channel is guided

"""Diffusion training objectives against diffusers: the DDPM forward process and v target (DDPMScheduler),
min-SNR weights (diffusers' compute_snr and its scripts' rule), the SD3 densities and loss weightings
(diffusers.training_utils), the static shift (FlowMatchEulerDiscreteScheduler)."""
from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3, compute_snr

from utils.diffusion.training.objectives import (FlowMatching, NoisePrediction, flow_weights, sample_density,
                                                 shift_sigmas)
from utils.errors import UserError


def _sdxl_schedule() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_noise_prediction_matches_ddpm_scheduler_and_min_snr(prediction_type):
    ref = _sdxl_schedule()
    obj = NoisePrediction(ref.alphas_cumprod, prediction_type, snr_gamma=5.0)
    x0 = torch.randn(6, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t, noise, x_t = obj.draw(x0, torch.Generator().manual_seed(1))
    assert torch.allclose(x_t, ref.add_noise(x0, noise, t), atol=1e-6)
    want = noise if prediction_type == "epsilon" else ref.get_velocity(x0, noise, t)
    assert torch.allclose(obj.target(x0, noise, t), want, atol=1e-6)
    snr = compute_snr(ref, t)
    clipped = torch.stack([snr, 5.0 * torch.ones_like(snr)], dim=1).min(dim=1)[0]
    rule = clipped / snr if prediction_type == "epsilon" else clipped / (snr + 1)
    assert torch.allclose(obj.weights(t), rule, rtol=1e-5)
    # the loss is the weighted mean of per-sample squared errors of the prediction
    pred = torch.zeros_like(x0)
    loss, _ = obj.loss(lambda x, time: pred, x0, torch.Generator().manual_seed(1))
    per = ((pred - want) ** 2).mean(dim=(1, 2, 3))
    assert torch.allclose(loss, (rule * per).mean(), rtol=1e-5)


@pytest.mark.parametrize("density", ["logit_normal", "mode", "uniform"])
def test_densities_match_diffusers(density):
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    ours = sample_density(64, density, g1, 0.2, 0.8, 1.29)
    want = compute_density_for_timestep_sampling(density, 64, 0.2, 0.8, 1.29, generator=g2)
    assert torch.allclose(ours, want, atol=1e-6)
    assert ((ours > 0) & (ours < 1)).all()


@pytest.mark.parametrize("weighting", ["none", "sigma_sqrt", "cosmap"])
def test_flow_weightings_match_diffusers(weighting):
    sigma = torch.linspace(0.05, 0.95, 19)
    ours = flow_weights(sigma, weighting)
    want = compute_loss_weighting_for_sd3(weighting, sigma)
    assert torch.allclose(torch.ones_like(sigma) if ours is None else ours, want, rtol=1e-6)


def test_shift_matches_the_flow_match_scheduler_and_the_flow_target():
    ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    u = torch.arange(1000, 0, -1).float() / 1000
    assert torch.allclose(shift_sigmas(u, 3.0), ref.sigmas, atol=1e-6)  # its training sigmas
    obj = FlowMatching("uniform", shift=3.0, weighting="cosmap")
    x0 = torch.randn(4, 16, 4, 4, generator=torch.Generator().manual_seed(0))
    sigma, noise, x_t = obj.draw(x0, torch.Generator().manual_seed(2))
    s = sigma.view(-1, 1, 1, 1)
    assert torch.allclose(x_t, (1 - s) * x0 + s * noise)
    seen = {}
    loss, _ = obj.loss(lambda x, time: seen.setdefault("t", time) * 0 + (noise - x0)[: x.shape[0]],
                       x0, torch.Generator().manual_seed(2))
    assert torch.equal(seen["t"], sigma) and float(loss) == 0.0  # the exact velocity has no loss


def test_bad_objective_settings_are_user_errors():
    for bad in (lambda: NoisePrediction(torch.ones(3), "sample"), lambda: NoisePrediction(torch.ones(3), snr_gamma=0),
                lambda: FlowMatching(density="beta"), lambda: FlowMatching(weighting="x"),
                lambda: FlowMatching(shift=0)):
        with pytest.raises(UserError):
            bad()

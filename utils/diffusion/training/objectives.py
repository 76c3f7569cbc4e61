"""Training objectives of latent diffusion models: what noise a step adds and what the denoiser must predict.

`NoisePrediction` (DDPM-trained UNets: SD 1.5, SDXL). t ~ U{0, ..., T-1}, x_t = sqrt(a_t) x0 + sqrt(1 - a_t) e;
the model predicts e ('epsilon') or v = sqrt(a_t) e - sqrt(1 - a_t) x0 ('v_prediction'). With `snr_gamma`,
each sample's squared error is weighted by min-SNR (Hang et al. 2023, "Efficient Diffusion Training via
Min-SNR Weighting Strategy"): min(SNR(t), gamma) / SNR(t) for epsilon, min(SNR(t), gamma) / (SNR(t) + 1) for
v, SNR(t) = a_t / (1 - a_t).

`FlowMatching` (rectified-flow transformers: SD3, FLUX; Esser et al. 2024). sigma in (0, 1) is drawn from
a density over u, then shifted: sigma = s u / (1 + (s - 1) u) (SD3's static shift 3.0; FLUX trains
unshifted, as diffusers' FLUX scripts); x_t = (1 - sigma) x0 + sigma e; the model predicts the velocity
e - x0. Densities: 'logit_normal' (u = sigmoid(N(mean, std)), the SD3 paper's best), 'mode' (the paper's
mode sampling with heavy tails, scale 1.29), 'uniform'. Loss weights: 'none', 'sigma_sqrt' (1 / sigma^2),
'cosmap' (2 / (pi (1 - 2 sigma + 2 sigma^2))), as diffusers' SD3/FLUX training scripts name them.

Each `loss(predict, x0, generator)` draws every random number from the CPU `generator` (exact resume), calls
`predict(x_t, time)` with the model's time input, and returns (loss, log).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from utils.errors import UserError

PREDICTION_TYPES = ("epsilon", "v_prediction")
DENSITIES = ("logit_normal", "mode", "uniform")
WEIGHTINGS = ("none", "sigma_sqrt", "cosmap")


def _per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((pred.float() - target.float()) ** 2).reshape(pred.shape[0], -1).mean(dim=1)


def min_snr_weights(snr: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """The min-SNR-gamma weight of each sample for the given prediction type."""
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    return clipped / snr if prediction_type == "epsilon" else clipped / (snr + 1)


@dataclass(frozen=True)
class NoisePrediction:
    """The DDPM objective (epsilon or v), optionally min-SNR weighted."""

    alphas_cumprod: torch.Tensor
    """(T,) cumulative products of 1 - beta of the model's training schedule."""
    prediction_type: str = "epsilon"
    """'epsilon' or 'v_prediction': what the model was trained to output."""
    snr_gamma: float | None = None
    """min-SNR gamma (5 in the paper); None: plain mean squared error."""

    def __post_init__(self) -> None:
        if self.prediction_type not in PREDICTION_TYPES:
            raise UserError(f"prediction type must be one of {', '.join(PREDICTION_TYPES)}, got '{self.prediction_type}'")
        if self.snr_gamma is not None and self.snr_gamma <= 0:
            raise UserError(f"--snr-gamma must be positive, got {self.snr_gamma}")

    def draw(self, x0: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(t, noise, x_t) for a batch of clean latents."""
        from utils.torch_utils import randn

        n = self.alphas_cumprod.shape[0]
        t = torch.randint(0, n, (x0.shape[0],), generator=generator)
        noise = randn(x0.shape, generator, x0.device)
        a = self.alphas_cumprod[t].to(x0.device).view(-1, *([1] * (x0.ndim - 1)))
        return t, noise, a.sqrt() * x0.float() + (1 - a).sqrt() * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "epsilon":
            return noise
        a = self.alphas_cumprod[t].to(x0.device).view(-1, *([1] * (x0.ndim - 1)))
        return a.sqrt() * noise - (1 - a).sqrt() * x0.float()

    def weights(self, t: torch.Tensor) -> torch.Tensor | None:
        if self.snr_gamma is None:
            return None
        a = self.alphas_cumprod[t]
        return min_snr_weights(a / (1 - a), self.snr_gamma, self.prediction_type)

    def loss(self, predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor,
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        t, noise, x_t = self.draw(x0, generator)
        mse = _per_sample_mse(predict(x_t, t.to(x0.device).float()), self.target(x0, noise, t))
        w = self.weights(t)
        loss = mse.mean() if w is None else (w.to(mse.device) * mse).mean()
        return loss, {"t": float(t.float().mean())}


def sample_density(n: int, density: str, generator: torch.Generator, logit_mean: float = 0.0,
                   logit_std: float = 1.0, mode_scale: float = 1.29) -> torch.Tensor:
    """u in (0, 1) for `n` samples from the named density."""
    if density == "logit_normal":
        return torch.sigmoid(logit_mean + logit_std * torch.randn(n, generator=generator))
    u = torch.rand(n, generator=generator)
    if density == "mode":
        return 1 - u - mode_scale * (torch.cos(math.pi * u / 2) ** 2 - 1 + u)
    if density == "uniform":
        return u
    raise UserError(f"timestep density must be one of {', '.join(DENSITIES)}, got '{density}'")


def flow_weights(sigma: torch.Tensor, weighting: str) -> torch.Tensor | None:
    if weighting == "none":
        return None
    if weighting == "sigma_sqrt":
        return sigma.float() ** -2.0
    if weighting == "cosmap":
        return 2 / (math.pi * (1 - 2 * sigma + 2 * sigma ** 2))
    raise UserError(f"loss weighting must be one of {', '.join(WEIGHTINGS)}, got '{weighting}'")


def shift_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """The static time shift of SD3: s u / (1 + (s - 1) u) (1: unchanged)."""
    return shift * u / (1 + (shift - 1) * u)


@dataclass(frozen=True)
class FlowMatching:
    """The rectified-flow objective: predict e - x0 at x_t = (1 - sigma) x0 + sigma e."""

    density: str = "logit_normal"
    """How sigma is drawn before the shift: logit_normal, mode or uniform."""
    logit_mean: float = 0.0
    """Mean of the normal under the logit-normal density."""
    logit_std: float = 1.0
    """Standard deviation of the normal under the logit-normal density."""
    mode_scale: float = 1.29
    """The heavy-tail scale of the mode density."""
    weighting: str = "none"
    """Per-sample loss weight: none, sigma_sqrt or cosmap."""
    shift: float = 1.0
    """The static shift of the sampled sigmas (SD3: 3.0; FLUX: 1.0)."""

    def __post_init__(self) -> None:
        if self.density not in DENSITIES:
            raise UserError(f"timestep density must be one of {', '.join(DENSITIES)}, got '{self.density}'")
        if self.weighting not in WEIGHTINGS:
            raise UserError(f"loss weighting must be one of {', '.join(WEIGHTINGS)}, got '{self.weighting}'")
        if self.shift <= 0:
            raise UserError(f"the time shift must be positive, got {self.shift}")

    def draw(self, x0: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sigma, noise, x_t) for a batch of clean latents."""
        from utils.torch_utils import randn

        u = sample_density(x0.shape[0], self.density, generator, self.logit_mean, self.logit_std, self.mode_scale)
        sigma = shift_sigmas(u, self.shift).to(x0.device)
        noise = randn(x0.shape, generator, x0.device)
        s = sigma.view(-1, *([1] * (x0.ndim - 1)))
        return sigma, noise, (1 - s) * x0.float() + s * noise

    def loss(self, predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor,
             generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        sigma, noise, x_t = self.draw(x0, generator)
        mse = _per_sample_mse(predict(x_t, sigma), noise - x0.float())
        w = flow_weights(sigma, self.weighting)
        loss = mse.mean() if w is None else (w.to(mse.device) * mse).mean()
        return loss, {"sigma": float(sigma.mean())}


__all__ = ["DENSITIES", "FlowMatching", "NoisePrediction", "PREDICTION_TYPES", "WEIGHTINGS", "flow_weights",
           "min_snr_weights", "sample_density", "shift_sigmas"]

"""Noise schedulers as pure functions: no hidden per-call state.

A scheduler is a frozen config. `schedule(num_steps, ...)` computes every tensor a sampling run
needs (a `Schedule`); `step(model_output, sample, i, schedule, generator, state)` is a pure function
that returns the next sample and the small `state` multistep or two-stage solvers carry to the next
call (the caller keeps it, so one scheduler serves any number of runs at once).

Index `i` runs over `schedule.timesteps`, one entry per model call (Heun has two per step).
Each scheduler reproduces the matching diffusers scheduler (`from_diffusers_config` reads its
config.json) step for step; the tests compare whole trajectories at 1e-5.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, NamedTuple, Sequence

import numpy as np
import torch

from utils.torch_utils import Generators, randn
from utils.errors import UserError, did_you_mean


@dataclass(frozen=True, eq=False)
class Schedule:
    """Everything about one sampling run's noise levels; tensors live on the CPU in float32/int64."""

    timesteps: torch.Tensor
    """What the model is given as its time input, one per model call."""
    sigmas: torch.Tensor | None = None
    """Noise levels (len(timesteps) + 1 entries ending at the final level) where the solver uses them."""
    alphas_cumprod: torch.Tensor | None = field(default=None, repr=False)
    prev_timesteps: torch.Tensor | None = None
    num_steps: int = 0
    init_noise_sigma: float = 1.0

    def __len__(self) -> int:
        return len(self.timesteps)


class StepOutput(NamedTuple):
    prev_sample: torch.Tensor
    denoised: torch.Tensor | None
    state: Any = None


# -- shared pieces of the discrete (DDPM-trained) schedules -----------------------------------------

def _betas(num_train: int, beta_start: float, beta_end: float, beta_schedule: str,
           trained_betas: Sequence[float] | None, rescale_zero_snr: bool) -> torch.Tensor:
    if trained_betas is not None:
        betas = torch.tensor(trained_betas, dtype=torch.float32)
    elif beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, num_train, dtype=torch.float32)
    elif beta_schedule == "scaled_linear":
        # The latent-diffusion schedule: linear in sqrt(beta).
        betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train, dtype=torch.float32) ** 2
    elif beta_schedule == "squaredcos_cap_v2":
        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = torch.tensor([min(1 - alpha_bar((i + 1) / num_train) / alpha_bar(i / num_train), 0.999)
                              for i in range(num_train)], dtype=torch.float32)
    elif beta_schedule == "sigmoid":
        betas = torch.sigmoid(torch.linspace(-6, 6, num_train)) * (beta_end - beta_start) + beta_start
    elif beta_schedule == "exp":
        # Shap-E: alpha_bar(t) = exp(-12 t), so beta_i = 1 - exp(-12 / T), capped like the cosine one.
        betas = torch.tensor([min(1 - math.exp(-12.0 * (i + 1) / num_train) / math.exp(-12.0 * i / num_train), 0.999)
                              for i in range(num_train)], dtype=torch.float32)
    else:
        raise UserError(f"unknown beta_schedule '{beta_schedule}': "
                        f"{did_you_mean(beta_schedule, ['linear', 'scaled_linear', 'squaredcos_cap_v2', 'sigmoid', 'exp'])}")
    if rescale_zero_snr:
        betas = _rescale_zero_terminal_snr(betas)
    return betas


def _rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    # Lin et al. 2023: shift and scale sqrt(alpha_bar) so the last step is pure noise.
    root = torch.cumprod(1.0 - betas, 0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    bar = root ** 2
    alphas = torch.cat([bar[:1], bar[1:] / bar[:-1]])
    return 1 - alphas


def _spacing(kind: str, n: int, num_train: int, steps_offset: int) -> np.ndarray:
    """Table 2 of "Common diffusion noise schedules are flawed": where the n steps sit in [0, T)."""
    if kind == "linspace":
        return np.linspace(0, num_train - 1, n)[::-1].copy()
    if kind == "leading":
        ratio = num_train // n
        return (np.arange(0, n) * ratio).round()[::-1].copy().astype(np.float64) + steps_offset
    if kind == "trailing":
        ratio = num_train / n
        return np.round(np.arange(num_train, 0, -ratio)) - 1
    raise UserError(f"unknown timestep_spacing '{kind}': choose from linspace, leading, trailing")


def _sigma_to_t(sigma: np.ndarray, log_sigmas: np.ndarray) -> np.ndarray:
    """Fractional training timestep of each sigma, interpolating log-sigma piecewise linearly."""
    log_sigma = np.log(np.maximum(sigma, 1e-10))
    dists = log_sigma - log_sigmas[:, None]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    lo, hi = log_sigmas[low], log_sigmas[low + 1]
    w = np.clip((lo - log_sigma) / (lo - hi), 0, 1)
    return ((1 - w) * low + w * (low + 1)).reshape(np.shape(sigma))


def karras_sigmas(sigma_min: float, sigma_max: float, n: int, rho: float = 7.0) -> np.ndarray:
    """Karras et al. 2022 (eq. 5): n levels from sigma_max to sigma_min, uniform in sigma^(1/rho)."""
    ramp = np.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def _threshold(x0: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    """Imagen's dynamic thresholding (`utils.diffusion.thresholding.dynamic_threshold`)."""
    from utils.diffusion.thresholding import dynamic_threshold

    return dynamic_threshold(x0, ratio, max_value)


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-sample (B,) or scalar tensor reshaped to broadcast against x."""
    v = v.to(x.device)
    return v.reshape(-1, *([1] * (x.ndim - 1))) if v.ndim == 1 else v


def _as_index_tensor(i: int | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(i, dtype=torch.long).reshape(-1)


# -- base -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scheduler:
    """Base of every scheduler: a frozen config plus pure functions of it."""

    diffusers_class: ClassVar[tuple[str, ...]] = ()
    order: ClassVar[int] = 1
    """Model calls per step (2 for Heun): img2img start indices are multiplied by it."""

    @classmethod
    def from_diffusers_config(cls, config: Mapping[str, Any] | None = None, **overrides: Any) -> "Scheduler":
        """Build from a diffusers scheduler config.json (unknown keys are ignored)."""
        config = dict(config or {})
        cls_name = config.get("_class_name")
        if cls is Scheduler:
            return scheduler_from_diffusers_config(config, **overrides)
        if cls_name and cls.diffusers_class and cls_name not in cls.diffusers_class:
            raise UserError(f"{cls.__name__} reads {'/'.join(cls.diffusers_class)} configs, not {cls_name}: "
                            "use scheduler_from_diffusers_config")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in {**config, **overrides}.items() if k in names}
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "Scheduler":
        return dataclasses.replace(self, **changes)

    # The interface every scheduler implements.
    def schedule(self, num_steps: int, **kw: Any) -> Schedule:  # pragma: no cover - abstract
        raise NotImplementedError

    def scale_model_input(self, sample: torch.Tensor, i: int, schedule: Schedule) -> torch.Tensor:
        return sample

    def step(self, model_output: torch.Tensor, sample: torch.Tensor, i: int, schedule: Schedule,
             generator: Generators = None, state: Any = None) -> StepOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor, i: int | torch.Tensor,
                  schedule: Schedule) -> torch.Tensor:
        """The noisy sample the run would hold at index i (img2img start, inpainting blend)."""
        if schedule.sigmas is not None:
            sigma = _bcast(schedule.sigmas[_as_index_tensor(i)].to(original.dtype), original)
            return original + noise * sigma
        a = schedule.alphas_cumprod.to(original.dtype)[schedule.timesteps[_as_index_tensor(i)].long()]
        a = _bcast(a, original)
        return a ** 0.5 * original + (1 - a) ** 0.5 * noise


@dataclass(frozen=True)
class _Discrete(Scheduler):
    """Fields shared by schedulers of DDPM-trained models (beta schedules over T training steps)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    trained_betas: tuple[float, ...] | None = None
    prediction_type: str = "epsilon"
    timestep_spacing: str = "leading"
    steps_offset: int = 0
    rescale_betas_zero_snr: bool = False

    def __post_init__(self) -> None:
        if self.trained_betas is not None and not isinstance(self.trained_betas, tuple):
            object.__setattr__(self, "trained_betas", tuple(float(b) for b in self.trained_betas))
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise UserError(f"prediction_type '{self.prediction_type}' is not supported by {type(self).__name__}: "
                            "use epsilon, v_prediction or sample")

    def alphas_cumprod(self) -> torch.Tensor:
        betas = _betas(self.num_train_timesteps, self.beta_start, self.beta_end, self.beta_schedule,
                       self.trained_betas, self.rescale_betas_zero_snr)
        return torch.cumprod(1.0 - betas, dim=0)

    def _check_steps(self, n: int) -> None:
        if not 1 <= n <= self.num_train_timesteps:
            raise UserError(f"num_steps must be between 1 and {self.num_train_timesteps}, got {n}")

    def _x0(self, out: torch.Tensor, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        b = 1 - a
        if self.prediction_type == "epsilon":
            return (x - b ** 0.5 * out) / a ** 0.5
        if self.prediction_type == "v_prediction":
            return a ** 0.5 * x - b ** 0.5 * out
        return out


@dataclass(frozen=True)
class _ClipMixin:
    clip_sample: bool = True
    clip_sample_range: float = 1.0
    thresholding: bool = False
    dynamic_thresholding_ratio: float = 0.995
    sample_max_value: float = 1.0

    def _clip(self, x0: torch.Tensor) -> torch.Tensor:
        if self.thresholding:
            return _threshold(x0, self.dynamic_thresholding_ratio, self.sample_max_value)
        if self.clip_sample:
            return x0.clamp(-self.clip_sample_range, self.clip_sample_range)
        return x0


# -- DDPM -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DDPM(_ClipMixin, _Discrete):
    """Ho et al. 2020 ancestral sampling (diffusers DDPMScheduler)."""

    diffusers_class: ClassVar[tuple[str, ...]] = ("DDPMScheduler",)
    variance_type: str = "fixed_small"

    def schedule(self, num_steps: int, device: Any = None) -> Schedule:
        self._check_steps(num_steps)
        ts = torch.from_numpy(_spacing(self.timestep_spacing, num_steps, self.num_train_timesteps,
                                       self.steps_offset).round().astype(np.int64))
        prev = torch.cat([ts[1:], torch.tensor([-1])])
        return Schedule(timesteps=ts, alphas_cumprod=self.alphas_cumprod(), prev_timesteps=prev, num_steps=num_steps)

    def _variance(self, a_t: torch.Tensor, a_prev: torch.Tensor, predicted: torch.Tensor | None) -> torch.Tensor:
        beta = 1 - a_t / a_prev
        var = torch.clamp((1 - a_prev) / (1 - a_t) * beta, min=1e-20)
        kind = self.variance_type
        if kind == "fixed_small":
            return var
        if kind == "fixed_small_log":
            return torch.exp(0.5 * torch.log(var))
        if kind == "fixed_large":
            return beta
        if kind == "fixed_large_log":
            return torch.log(beta)
        if kind == "learned":
            return predicted
        if kind == "learned_range":
            frac = (predicted + 1) / 2
            return frac * torch.log(beta) + (1 - frac) * torch.log(var)
        raise UserError(f"unknown variance_type '{kind}'")

    def step(self, model_output, sample, i, schedule, generator=None, state=None) -> StepOutput:
        t, prev_t = int(schedule.timesteps[i]), int(schedule.prev_timesteps[i])
        predicted = None
        if model_output.shape[1] == sample.shape[1] * 2 and self.variance_type in ("learned", "learned_range"):
            model_output, predicted = torch.split(model_output, sample.shape[1], dim=1)
        acp = schedule.alphas_cumprod
        a_t = acp[t]
        a_prev = acp[prev_t] if prev_t >= 0 else torch.tensor(1.0)
        cur_alpha = a_t / a_prev
        cur_beta = 1 - cur_alpha
        x0 = self._clip(self._x0(model_output, sample, a_t))
        mean = (a_prev ** 0.5 * cur_beta / (1 - a_t)) * x0 + (cur_alpha ** 0.5 * (1 - a_prev) / (1 - a_t)) * sample
        if t > 0:
            noise = randn(model_output.shape, generator, model_output.device, model_output.dtype)
            var = self._variance(a_t, a_prev, predicted)
            if self.variance_type == "fixed_small_log":
                mean = mean + var * noise
            elif self.variance_type == "learned_range":
                mean = mean + torch.exp(0.5 * var) * noise
            else:
                mean = mean + var ** 0.5 * noise
        return StepOutput(mean, x0)


# -- DDIM -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DDIM(_ClipMixin, _Discrete):
    """Song et al. 2021 (diffusers DDIMScheduler); `eta` > 0 adds DDPM-like noise."""

    diffusers_class: ClassVar[tuple[str, ...]] = ("DDIMScheduler",)
    set_alpha_to_one: bool = True
    eta: float = 0.0

    def schedule(self, num_steps: int, device: Any = None) -> Schedule:
        self._check_steps(num_steps)
        ts = torch.from_numpy(_spacing(self.timestep_spacing, num_steps, self.num_train_timesteps,
                                       self.steps_offset).round().astype(np.int64))
        # diffusers steps back by T // n whatever the spacing; kept for parity.
        prev = ts - self.num_train_timesteps // num_steps
        return Schedule(timesteps=ts, alphas_cumprod=self.alphas_cumprod(), prev_timesteps=prev, num_steps=num_steps)

    def step(self, model_output, sample, i, schedule, generator=None, state=None) -> StepOutput:
        t, prev_t = int(schedule.timesteps[i]), int(schedule.prev_timesteps[i])
        acp = schedule.alphas_cumprod
        a_t = acp[t]
        final = torch.tensor(1.0) if self.set_alpha_to_one else acp[0]
        a_prev = acp[prev_t] if prev_t >= 0 else final
        b_t = 1 - a_t
        if self.prediction_type == "epsilon":
            x0, eps = (sample - b_t ** 0.5 * model_output) / a_t ** 0.5, model_output
        elif self.prediction_type == "v_prediction":
            x0 = a_t ** 0.5 * sample - b_t ** 0.5 * model_output
            eps = a_t ** 0.5 * model_output + b_t ** 0.5 * sample
        else:
            x0 = model_output
            eps = (sample - a_t ** 0.5 * x0) / b_t ** 0.5
        x0 = self._clip(x0)
        var = ((1 - a_prev) / b_t) * (1 - a_t / a_prev)
        std = self.eta * var ** 0.5
        prev = a_prev ** 0.5 * x0 + (1 - a_prev - std ** 2) ** 0.5 * eps
        if self.eta > 0:
            prev = prev + std * randn(model_output.shape, generator, model_output.device, model_output.dtype)
        return StepOutput(prev, x0)


# -- sigma-space schedulers of DDPM-trained models (Euler, Euler ancestral, Heun) --------------------

def _init_sigma(sigmas: torch.Tensor, spacing: str) -> float:
    top = float(sigmas.max())
    return top if spacing in ("linspace", "trailing") else (top ** 2 + 1) ** 0.5


@dataclass(frozen=True)
class _SigmaDiscrete(_Discrete):
    timestep_spacing: str = "linspace"

    def _base_sigmas(self) -> tuple[torch.Tensor, np.ndarray]:
        acp = self.alphas_cumprod()
        if self.rescale_betas_zero_snr:
            acp = acp.clone()
            acp[-1] = 2 ** -24  # keep sigma finite at the zero-SNR end
        return acp, np.array(((1 - acp) / acp) ** 0.5)

    def scale_model_input(self, sample, i, schedule):
        sigma = schedule.sigmas[i]
        return sample / ((sigma ** 2 + 1) ** 0.5)

    def _x0_sigma(self, out: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "epsilon":
            return x - sigma * out
        if self.prediction_type == "v_prediction":
            return out * (-sigma / (sigma ** 2 + 1) ** 0.5) + x / (sigma ** 2 + 1)
        return out


@dataclass(frozen=True)
class Euler(_SigmaDiscrete):
    """Euler method on the probability-flow ODE (diffusers EulerDiscreteScheduler), optional churn."""

    diffusers_class: ClassVar[tuple[str, ...]] = ("EulerDiscreteScheduler",)
    interpolation_type: str = "linear"
    use_karras_sigmas: bool = False
    sigma_min: float | None = None
    sigma_max: float | None = None
    timestep_type: str = "discrete"
    final_sigmas_type: str = "zero"
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = float("inf")
    s_noise: float = 1.0

    def schedule(self, num_steps: int, device: Any = None, sigmas: Sequence[float] | None = None) -> Schedule:
        acp, base = self._base_sigmas()
        log_sigmas = np.log(base)
        if sigmas is not None:
            sig = np.asarray(sigmas, dtype=np.float32)
            ts = np.array([_sigma_to_t(s, log_sigmas) for s in sig[:-1]])
            num_steps = len(sig) - 1
        else:
            self._check_steps(num_steps)
            ts = _spacing(self.timestep_spacing, num_steps, self.num_train_timesteps, self.steps_offset)
            ts = ts.astype(np.float32)
            if self.interpolation_type == "linear":
                sig = np.interp(ts, np.arange(len(base)), base)
            elif self.interpolation_type == "log_linear":
                sig = torch.linspace(np.log(base[-1]), np.log(base[0]), num_steps + 1).exp().numpy()
            else:
                raise UserError(f"unknown interpolation_type '{self.interpolation_type}': use linear or log_linear")
            if self.use_karras_sigmas:
                lo = self.sigma_min if self.sigma_min is not None else sig[-1].item()
                hi = self.sigma_max if self.sigma_max is not None else sig[0].item()
                sig = karras_sigmas(lo, hi, num_steps)
                ts = np.array([_sigma_to_t(s, log_sigmas) for s in sig])
            last = float(base[0]) if self.final_sigmas_type == "sigma_min" else 0.0
            sig = np.concatenate([sig, [last]]).astype(np.float32)
        sig_t = torch.from_numpy(sig).float()
        if self.timestep_type == "continuous" and self.prediction_type == "v_prediction":
            timesteps = torch.stack([0.25 * s.log() for s in sig_t[:-1]])
        else:
            timesteps = torch.from_numpy(np.asarray(ts).astype(np.float32))
        return Schedule(timesteps=timesteps, sigmas=sig_t, alphas_cumprod=acp, num_steps=num_steps,
                        init_noise_sigma=_init_sigma(sig_t, self.timestep_spacing))

    def step(self, model_output, sample, i, schedule, generator=None, state=None) -> StepOutput:
        sample = sample.float()
        sigma = schedule.sigmas[i]
        n = len(schedule.sigmas) - 1
        gamma = min(self.s_churn / n, 2 ** 0.5 - 1) if self.s_tmin <= sigma <= self.s_tmax else 0.0
        sigma_hat = sigma * (gamma + 1)
        if gamma > 0:
            eps = randn(model_output.shape, generator, model_output.device, model_output.dtype) * self.s_noise
            sample = sample + eps * (sigma_hat ** 2 - sigma ** 2) ** 0.5
        if self.prediction_type == "epsilon":
            x0 = sample - sigma_hat * model_output
        else:
            x0 = self._x0_sigma(model_output, sample, sigma)
        d = (sample - x0) / sigma_hat
        prev = sample + d * (schedule.sigmas[i + 1] - sigma_hat)
        return StepOutput(prev.to(model_output.dtype), x0)


@dataclass(frozen=True)
class EulerAncestral(_SigmaDiscrete):
    """Euler ancestral (diffusers EulerAncestralDiscreteScheduler): fresh noise at every step."""

    diffusers_class: ClassVar[tuple[str, ...]] = ("EulerAncestralDiscreteScheduler",)

    def schedule(self, num_steps: int, device: Any = None) -> Schedule:
        self._check_steps(num_steps)
        acp, base = self._base_sigmas()
        ts = _spacing(self.timestep_spacing, num_steps, self.num_train_timesteps, self.steps_offset).astype(np.float32)
        sig = np.concatenate([np.interp(ts, np.arange(len(base)), base), [0.0]]).astype(np.float32)
        sig_t = torch.from_numpy(sig)
        return Schedule(timesteps=torch.from_numpy(ts), sigmas=sig_t, alphas_cumprod=acp, num_steps=num_steps,
                        init_noise_sigma=_init_sigma(sig_t, self.timestep_spacing))

    def step(self, model_output, sample, i, schedule, generator=None, state=None) -> StepOutput:
        if self.prediction_type == "sample":
            raise UserError("EulerAncestral does not support prediction_type 'sample'")
        sample = sample.float()
        s_from, s_to = schedule.sigmas[i], schedule.sigmas[i + 1]
        x0 = self._x0_sigma(model_output, sample, s_from)
        s_up = (s_to ** 2 * (s_from ** 2 - s_to ** 2) / s_from ** 2) ** 0.5
        s_down = (s_to ** 2 - s_up ** 2) ** 0.5
        prev = sample + (sample - x0) / s_from * (s_down - s_from)
        prev = prev + randn(model_output.shape, generator, model_output.device, model_output.dtype) * s_up
        return StepOutput(prev.to(model_output.dtype), x0)


class HeunState(NamedTuple):
    derivative: torch.Tensor
    dt: torch.Tensor
    sample: torch.Tensor


@dataclass(frozen=True)
class Heun(_SigmaDiscrete):
    """Heun's second-order method (diffusers HeunDiscreteScheduler): two model calls per step,
    the last step plain Euler. The first stage's slope travels in `state`."""

    diffusers_class: ClassVar[tuple[str, ...]] = ("HeunDiscreteScheduler",)
    order: ClassVar[int] = 2
    beta_start: float = 0.00085
    beta_end: float = 0.012
    use_karras_sigmas: bool = False
    clip_sample: bool = False
    clip_sample_range: float = 1.0

    def schedule(self, num_steps: int, device: Any = None) -> Schedule:
        self._check_steps(num_steps)
        acp, base = self._base_sigmas()
        log_sigmas = np.log(base)
        ts = _spacing(self.timestep_spacing, num_steps, self.num_train_timesteps, self.steps_offset).astype(np.float32)
        sig = np.interp(ts, np.arange(len(base)), base)
        if self.use_karras_sigmas:
            sig = karras_sigmas(sig[-1].item(), sig[0].item(), num_steps)
            ts = np.array([_sigma_to_t(s, log_sigmas) for s in sig])
        sig_t = torch.from_numpy(np.concatenate([sig, [0.0]]).astype(np.float32))
        # Every level after the first is visited twice: the end of one step's Euler stage and
        # the start of the correction.
        sig_t = torch.cat([sig_t[:1], sig_t[1:-1].repeat_interleave(2), sig_t[-1:]])
        t = torch.from_numpy(np.asarray(ts))
        t = torch.cat([t[:1], t[1:].repeat_interleave(2)]).float()
        return Schedule(timesteps=t, sigmas=sig_t, alphas_cumprod=acp, num_steps=num_steps,
                        init_noise_sigma=_init_sigma(sig_t, self.timestep_spacing))

    def step(self, model_output, sample, i, schedule, generator=None, state=None) -> StepOutput:
        first = state is None
        if first:
            sigma, sigma_next = schedule.sigmas[i], schedule.sigmas[i + 1]
            sigma_in = sigma
        else:
            sigma, sigma_next = schedule.sigmas[i - 1], schedule.sigmas[i]
            sigma_in = sigma_next
        x0 = self._x0_sigma(model_output, sample, sigma_in)
        if self.clip_sample:
            x0 = x0.clamp(-self.clip_sample_range, self.clip_sample_range)
        if first:
            d = (sample - x0) / sigma
            dt = sigma_next - sigma
            prev = sample + d * dt
            # The final step (to sigma 0) has no correction stage.
            new_state = HeunState(d, dt, sample) if i + 1 < len(schedule.timesteps) else None
            return StepOutput(prev, x0, new_state)
        d = (state.derivative + (sample - x0) / sigma_next) / 2
        return StepOutput(state.sample + d * state.dt, x0, None)


# -- DPM-Solver++ (2M) ------------------------------------------------------------------------------

class DPMState(NamedTuple):
    prev_denoised: torch.Tensor | None
    lower_order_nums: int


@dataclass(frozen=True)
class DPMSolverMultistep(_Discrete):
    """DPM-Solver++ multistep of order 1 or 2, ODE or SDE (diffusers DPMSolverMultistepScheduler).

    `state` carries the previous denoised estimate.
    """

    diffusers_class: ClassVar[tuple[str, ...]] = ("DPMSolverMultistepScheduler",)
    timestep_spacing: str = "linspace"
    solver_order: int = 2
    algorithm_type: str = "dpmsolver++"
    solver_type: str = "midpoint"
    lower_order_final: bool = True
    euler_at_final: bool = False
    use_karras_sigmas: bool = False
    final_sigmas_type: str = "zero"
    lambda_min_clipped: float = -float("inf")
    thresholding: bool = False
    dynamic_thresholding_ratio: float = 0.995
    sample_max_value: float = 1.0
    variance_type: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.solver_order not in (1, 2):
            raise UserError(f"DPM-Solver solver_order {self.solver_order} is not supported here: use 1 or 2")
        if self.algorithm_type not in ("dpmsolver++", "sde-dpmsolver++"):
            raise UserError(f"DPM-Solver algorithm_type '{self.algorithm_type}' is not supported: "
                            "use dpmsolver++ or sde-dpmsolver++")
        if self.solver_type not in ("midpoint", "heun"):
            raise UserError(f"unknown solver_type '{self.solver_type}': use midpoint or heun")

    def schedule(self, num_steps: int, device: Any = None) -> Schedule:
        self._check_steps(num_steps)
        acp = self.alphas_cumprod()
        if self.rescale_betas_zero_snr:
            acp = acp.clone()
            acp[-1] = 2 ** -24
        lam = torch.log(acp.sqrt()) - torch.log((1 - acp).sqrt())
        clipped = int(torch.searchsorted(torch.flip(lam, [0]), self.lambda_min_clipped))
        last_t = self.num_train_timesteps - clipped
        n = num_steps
        if self.timestep_spacing == "linspace":
            ts = np.linspace(0, last_t - 1, n + 1).round()[::-1][:-1].copy().astype(np.int64)
        elif self.timestep_spacing == "leading":
            ratio = last_t // (n + 1)
            ts = (np.arange(0, n + 1) * ratio).round()[::-1][:-1].copy().astype(np.int64) + self.steps_offset
        elif self.timestep_spacing == "trailing":
            ratio = self.num_train_timesteps / n
            ts = np.arange(last_t, 0, -ratio).round().copy().astype(np.int64) - 1
        else:
            raise UserError(f"unknown timestep_spacing '{self.timestep_spacing}': choose from linspace, leading, trailing")
        base = np.array(((1 - acp) / acp) ** 0.5)
        log_sigmas = np.log(base)
        if self.use_karras_sigmas:
            flipped = np.flip(base).copy()
            sig = karras_sigmas(flipped[-1].item(), flipped[0].item(), n)
            ts = np.array([_sigma_to_t(s, log_sigmas) for s in sig])
            if self.beta_schedule != "squaredcos_cap_v2":
                ts = ts.round()
        else:
            sig = np.interp(ts, np.arange(len(base)), base)
        last = float(((1 - acp[0]) / acp[0]) ** 0.5) if self.final_sigmas_type == "sigma_min" else 0.0
        sig = np.concatenate([sig, [last]]).astype(np.float32)
        return Schedule(timesteps=torch.from_numpy(np.asarray(ts)).long(), sigmas=torch.from_numpy(sig),
                        alphas_cumprod=acp, num_steps=len(ts))

    @staticmethod
    def _alpha_sigma(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = 1 / ((sigma ** 2 + 1) ** 0.5)
        return alpha, sigma * alpha

    def _denoised(self, out: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "epsilon":
            if self.variance_type in ("learned", "learned_range"):
                out = out[:, :3]
            alpha, sig = self._alpha_sigma(sigma)
            x0 = (x - sig * out) / alpha
        elif self.prediction_type == "v_prediction":
            alpha, sig = self._alpha_sigma(sigma)
            x0 = alpha * x - sig * out
        else:
            x0 = out
        return _threshold(x0, self.dynamic_thresholding_ratio, self.sample_max_value) if self.thresholding else x0

    def step(self, model_output, sample, i, schedule, generator=None, state=None) -> StepOutput:
        state = state or DPMState(None, 0)
        n = len(schedule.timesteps)
        last = i == n - 1
        lower_final = last and (self.euler_at_final or (self.lower_order_final and n < 15)
                                or self.final_sigmas_type == "zero")
        lower_second = i == n - 2 and self.lower_order_final and n < 15
        sigmas = schedule.sigmas
        x0 = self._denoised(model_output, sample, sigmas[i])
        sample = sample.float()
        sde = self.algorithm_type == "sde-dpmsolver++"
        noise = randn(model_output.shape, generator, model_output.device, torch.float32) if sde else None
        alpha_t, sigma_t = self._alpha_sigma(sigmas[i + 1])
        alpha_s, sigma_s = self._alpha_sigma(sigmas[i])
        lam_t = torch.log(alpha_t) - torch.log(sigma_t)
        lam_s = torch.log(alpha_s) - torch.log(sigma_s)
        h = lam_t - lam_s
        first_order = self.solver_order == 1 or state.lower_order_nums < 1 or lower_final
        del lower_second  # only matters for order 3, which is not offered
        if first_order:
            if sde:
                prev = ((sigma_t / sigma_s * torch.exp(-h)) * sample + (alpha_t * (1 - torch.exp(-2.0 * h))) * x0
                        + sigma_t * torch.sqrt(1.0 - torch.exp(-2 * h)) * noise)
            else:
                prev = (sigma_t / sigma_s) * sample - (alpha_t * (torch.exp(-h) - 1.0)) * x0
        else:
            alpha_p, sigma_p = self._alpha_sigma(sigmas[i - 1])
            lam_p = torch.log(alpha_p) - torch.log(sigma_p)
            r = (lam_s - lam_p) / h
            d0, d1 = x0, (1.0 / r) * (x0 - state.prev_denoised)
            if sde:
                e = 1 - torch.exp(-2.0 * h)
                coef = 0.5 * (alpha_t * e) if self.solver_type == "midpoint" else alpha_t * (e / (-2.0 * h) + 1.0)
                prev = ((sigma_t / sigma_s * torch.exp(-h)) * sample + (alpha_t * e) * d0 + coef * d1
                        + sigma_t * torch.sqrt(e) * noise)
            else:
                e = torch.exp(-h) - 1.0
                base = (sigma_t / sigma_s) * sample - (alpha_t * e) * d0
                prev = base - 0.5 * (alpha_t * e) * d1 if self.solver_type == "midpoint" else \
                    base + (alpha_t * (e / h + 1.0)) * d1
        new_state = DPMState(x0, min(state.lower_order_nums + 1, self.solver_order))
        return StepOutput(prev.to(model_output.dtype), x0, new_state)


# -- LCM --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LCM(_ClipMixin, _Discrete):
    """Latent consistency model multistep sampling (diffusers LCMScheduler)."""

    diffusers_class: ClassVar[tuple[str, ...]] = ("LCMScheduler",)
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    clip_sample: bool = False
    original_inference_steps: int = 50
    set_alpha_to_one: bool = True
    timestep_scaling: float = 10.0

    def schedule(self, num_steps: int, device: Any = None, strength: float = 1.0) -> Schedule:
        orig = self.original_inference_steps
        k = self.num_train_timesteps // orig
        origin = np.asarray(list(range(1, int(orig * strength) + 1))) * k - 1
        if num_steps > orig or len(origin) // num_steps < 1:
            raise UserError(f"LCM can take at most {min(orig, len(origin))} steps here "
                            f"(original_inference_steps={orig}, strength={strength}), got {num_steps}")
        origin = origin[::-1].copy()
        idx = np.floor(np.linspace(0, len(origin), num=num_steps, endpoint=False)).astype(np.int64)
        ts = torch.from_numpy(origin[idx].copy()).long()
        return Schedule(timesteps=ts, alphas_cumprod=self.alphas_cumprod(), num_steps=num_steps)

    def step(self, model_output, sample, i, schedule, generator=None, state=None) -> StepOutput:
        ts, acp = schedule.timesteps, schedule.alphas_cumprod
        t = int(ts[i])
        prev_t = int(ts[i + 1]) if i + 1 < len(ts) else t
        a_t = acp[t]
        final = torch.tensor(1.0) if self.set_alpha_to_one else acp[0]
        a_prev = acp[prev_t] if prev_t >= 0 else final
        scaled = t * self.timestep_scaling
        c_skip = 0.25 / (scaled ** 2 + 0.25)  # sigma_data = 0.5
        c_out = scaled / (scaled ** 2 + 0.25) ** 0.5
        x0 = self._clip(self._x0(model_output, sample, a_t))
        denoised = c_out * x0 + c_skip * sample
        if i != len(ts) - 1:
            noise = randn(model_output.shape, generator, model_output.device, denoised.dtype)
            return StepOutput(a_prev.sqrt() * denoised + (1 - a_prev).sqrt() * noise, denoised)
        return StepOutput(denoised, denoised)


# -- flow matching (SD3, FLUX) ----------------------------------------------------------------------

def flux_mu(image_seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096, base_shift: float = 0.5,
            max_shift: float = 1.15) -> float:
    """FLUX's resolution-dependent shift: mu linear in the image token count, 0.5 at 256 and 1.15 at 4096."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return image_seq_len * m + (base_shift - m * base_seq_len)


def time_shift(t: np.ndarray | torch.Tensor, mu: float, kind: str = "exponential", sigma: float = 1.0):
    """Shift noise levels towards the noisy end: e^mu / (e^mu + (1/t - 1)^sigma) (or mu / (mu + ...))."""
    if kind == "exponential":
        return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** sigma)
    if kind == "linear":
        return mu / (mu + (1 / t - 1) ** sigma)
    raise UserError(f"unknown time_shift_type '{kind}': use exponential or linear")


@dataclass(frozen=True)
class FlowMatchEuler(Scheduler):
    """Euler on a rectified-flow velocity field (diffusers FlowMatchEulerDiscreteScheduler).

    sigma goes 1 -> 0; timesteps are sigma * 1000. SD3: a static `shift` (3.0). FLUX: dynamic
    shifting with `mu = flux_mu(image_seq_len, ...)` passed to `schedule`.
    """

    diffusers_class: ClassVar[tuple[str, ...]] = ("FlowMatchEulerDiscreteScheduler",)
    num_train_timesteps: int = 1000
    shift: float = 1.0
    use_dynamic_shifting: bool = False
    base_shift: float | None = 0.5
    max_shift: float | None = 1.15
    base_image_seq_len: int = 256
    max_image_seq_len: int = 4096
    shift_terminal: float | None = None
    time_shift_type: str = "exponential"
    stochastic_sampling: bool = False
    invert_sigmas: bool = False
    use_karras_sigmas: bool = False
    use_exponential_sigmas: bool = False
    use_beta_sigmas: bool = False

    def __post_init__(self) -> None:
        unsupported = [n for n in ("invert_sigmas", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
                       if getattr(self, n)]
        if unsupported:
            raise UserError(f"FlowMatchEuler does not support {', '.join(unsupported)}: leave them false")

    def mu_for(self, image_seq_len: int) -> float:
        """The dynamic shift for `image_seq_len` latent tokens, from this config's base/max settings."""
        return flux_mu(image_seq_len, self.base_image_seq_len, self.max_image_seq_len, self.base_shift,
                       self.max_shift)

    def schedule(self, num_steps: int | None = None, device: Any = None, mu: float | None = None,
                 sigmas: Sequence[float] | None = None, image_seq_len: int | None = None) -> Schedule:
        T = self.num_train_timesteps
        if self.use_dynamic_shifting and mu is None:
            if image_seq_len is None:
                raise UserError("this flow-matching schedule shifts with resolution: pass mu= or image_seq_len=")
            mu = self.mu_for(image_seq_len)
        if sigmas is None:
            if not num_steps or num_steps < 1:
                raise UserError(f"num_steps must be at least 1, got {num_steps}")
            # The range is that of the training grid (1 down to 1/T, statically shifted unless the
            # shift is dynamic), computed in float32 as diffusers does.
            grid = torch.from_numpy(np.linspace(1, T, T, dtype=np.float32)[::-1].copy()) / T
            if not self.use_dynamic_shifting:
                grid = self.shift * grid / (1 + (self.shift - 1) * grid)
            sig = np.linspace(grid[0].item() * T, grid[-1].item() * T, num_steps) / T
        else:
            sig = np.asarray(sigmas).astype(np.float32)
            num_steps = len(sig)
        if self.use_dynamic_shifting:
            sig = time_shift(sig, mu, self.time_shift_type)
        else:
            sig = self.shift * sig / (1 + (self.shift - 1) * sig)
        if self.shift_terminal and float(sig[-1]) < 1:
            # stretch so the last step lands on shift_terminal; a schedule whose last level is pure
            # noise (one step from sigma 1) has nothing to stretch, and diffusers' formula gives NaN there
            one_minus = 1 - sig
            sig = 1 - one_minus / (one_minus[-1] / (1 - self.shift_terminal))
        sig_t = torch.from_numpy(np.asarray(sig)).float()
        timesteps = sig_t * T
        return Schedule(timesteps=timesteps, sigmas=torch.cat([sig_t, torch.zeros(1)]), num_steps=num_steps)

    def step(self, model_output, sample, i, schedule, generator=None, state=None) -> StepOutput:
        sample = sample.float()
        sigma, sigma_next = schedule.sigmas[i], schedule.sigmas[i + 1]
        x0 = sample - sigma * model_output
        if self.stochastic_sampling:
            noise = randn(sample.shape, generator, sample.device, sample.dtype)
            prev = (1.0 - sigma_next) * x0 + sigma_next * noise
        else:
            prev = sample + (sigma_next - sigma) * model_output
        return StepOutput(prev.to(model_output.dtype), x0)

    def add_noise(self, original, noise, i, schedule):
        sigma = _bcast(schedule.sigmas[_as_index_tensor(i)].to(original.dtype), original)
        return sigma * noise + (1.0 - sigma) * original


# -- EDM (Karras et al. 2022), as SVD uses ---------------------------------------------------------

@dataclass(frozen=True)
class EDMEuler(Scheduler):
    """Euler in EDM's preconditioned form (diffusers EDMEulerScheduler): the model sees c_in * x and
    c_noise = log(sigma) / 4 and its output is mixed with c_skip / c_out."""

    diffusers_class: ClassVar[tuple[str, ...]] = ("EDMEulerScheduler",)
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    sigma_schedule: str = "karras"
    num_train_timesteps: int = 1000
    prediction_type: str = "epsilon"
    rho: float = 7.0
    final_sigmas_type: str = "zero"
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = float("inf")
    s_noise: float = 1.0

    def schedule(self, num_steps: int, device: Any = None) -> Schedule:
        if num_steps < 1:
            raise UserError(f"num_steps must be at least 1, got {num_steps}")
        ramp = torch.linspace(0, 1, num_steps, dtype=torch.float64)
        if self.sigma_schedule == "karras":
            lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
            sig = (hi + ramp * (lo - hi)) ** self.rho
        elif self.sigma_schedule == "exponential":
            sig = torch.linspace(math.log(self.sigma_min), math.log(self.sigma_max), num_steps).exp().flip(0)
        else:
            raise UserError(f"unknown sigma_schedule '{self.sigma_schedule}': use karras or exponential")
        sig = sig.float()
        last = sig[-1] if self.final_sigmas_type == "sigma_min" else torch.tensor(0.0)
        sigmas = torch.cat([sig, last.reshape(1)])
        return Schedule(timesteps=0.25 * torch.log(sig), sigmas=sigmas, num_steps=num_steps,
                        init_noise_sigma=(self.sigma_max ** 2 + 1) ** 0.5)

    def scale_model_input(self, sample, i, schedule):
        sigma = schedule.sigmas[i]
        return sample * (1 / ((sigma ** 2 + self.sigma_data ** 2) ** 0.5))

    def precondition_outputs(self, sample: torch.Tensor, model_output: torch.Tensor, sigma) -> torch.Tensor:
        sd = self.sigma_data
        c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)
        c_out = sigma * sd / (sigma ** 2 + sd ** 2) ** 0.5
        if self.prediction_type == "v_prediction":
            c_out = -c_out
        elif self.prediction_type != "epsilon":
            raise UserError(f"EDMEuler supports prediction_type epsilon or v_prediction, not {self.prediction_type}")
        return c_skip * sample + c_out * model_output

    def step(self, model_output, sample, i, schedule, generator=None, state=None) -> StepOutput:
        sample = sample.float()
        sigma = schedule.sigmas[i]
        n = len(schedule.sigmas) - 1
        gamma = min(self.s_churn / n, 2 ** 0.5 - 1) if self.s_tmin <= sigma <= self.s_tmax else 0.0
        sigma_hat = sigma * (gamma + 1)
        if gamma > 0:
            eps = randn(model_output.shape, generator, model_output.device, model_output.dtype) * self.s_noise
            sample = sample + eps * (sigma_hat ** 2 - sigma ** 2) ** 0.5
        x0 = self.precondition_outputs(sample, model_output, sigma_hat)
        prev = sample + (sample - x0) / sigma_hat * (schedule.sigmas[i + 1] - sigma_hat)
        return StepOutput(prev.to(model_output.dtype), x0)


# -- lookup -----------------------------------------------------------------------------------------

SCHEDULER_CLASSES: tuple[type[Scheduler], ...] = (DDPM, DDIM, Euler, EulerAncestral, Heun, DPMSolverMultistep, LCM,
                                                  FlowMatchEuler, EDMEuler)


def scheduler_from_diffusers_config(config: Mapping[str, Any], class_name: str | None = None,
                                    **overrides: Any) -> Scheduler:
    """The scheduler a diffusers scheduler config.json describes (its `_class_name` picks the class)."""
    name = class_name or config.get("_class_name")
    for cls in SCHEDULER_CLASSES:
        if name in cls.diffusers_class:
            return cls.from_diffusers_config({k: v for k, v in config.items() if k != "_class_name"}, **overrides)
    known = [n for c in SCHEDULER_CLASSES for n in c.diffusers_class]
    raise UserError(f"unsupported diffusers scheduler '{name}': {did_you_mean(str(name), known)}")


# name -> (class, config changes applied over the model's base config)
_NAMED: dict[str, tuple[type[Scheduler], dict[str, Any]]] = {
    "ddpm": (DDPM, {}),
    "ddim": (DDIM, {}),
    "euler": (Euler, {}),
    "euler-karras": (Euler, {"use_karras_sigmas": True}),
    "euler-a": (EulerAncestral, {}),
    "heun": (Heun, {}),
    "heun-karras": (Heun, {"use_karras_sigmas": True}),
    "dpm++2m": (DPMSolverMultistep, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++2m-karras": (DPMSolverMultistep, {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                            "use_karras_sigmas": True}),
    "dpm++2m-sde": (DPMSolverMultistep, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "dpm++2m-sde-karras": (DPMSolverMultistep, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2,
                                                "use_karras_sigmas": True}),
    "lcm": (LCM, {}),
    "flow-euler": (FlowMatchEuler, {}),
    "edm-euler": (EDMEuler, {}),
}
_ALIASES = {"euler_a": "euler-a", "euler-ancestral": "euler-a", "euler_ancestral": "euler-a",
            "dpmpp_2m": "dpm++2m", "dpmpp-2m": "dpm++2m", "dpmpp_2m_karras": "dpm++2m-karras",
            "dpm++-2m-karras": "dpm++2m-karras", "flow": "flow-euler", "flow-match-euler": "flow-euler",
            "flowmatch": "flow-euler", "edm": "edm-euler"}


def scheduler_names() -> list[str]:
    return sorted(_NAMED)


def get_scheduler(name: str, base_config: Mapping[str, Any] | None = None, **overrides: Any) -> Scheduler:
    """A scheduler by name ("euler", "dpm++2m-karras", "ddim"...).

    `base_config` (a diffusers scheduler config of the model, any class) supplies the training
    schedule (betas, prediction type, spacing) so a model can switch samplers as in A1111/ComfyUI;
    fields the named class does not have are dropped.
    """
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in _NAMED:
        raise UserError(f"unknown scheduler '{name}': {did_you_mean(str(name), scheduler_names())}")
    cls, changes = _NAMED[key]
    base = {k: v for k, v in dict(base_config or {}).items() if k != "_class_name"}
    return cls.from_diffusers_config({**base, **changes}, **overrides)


__all__ = ["DDIM", "DDPM", "DPMSolverMultistep", "DPMState", "EDMEuler", "Euler", "EulerAncestral", "FlowMatchEuler",
           "Heun", "HeunState", "LCM", "SCHEDULER_CLASSES", "Schedule", "Scheduler", "StepOutput", "flux_mu",
           "get_scheduler", "karras_sigmas", "scheduler_from_diffusers_config", "scheduler_names", "time_shift"]

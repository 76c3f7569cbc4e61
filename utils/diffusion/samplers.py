"""One sampling loop over any scheduler, plus img2img, inpainting and partial-schedule helpers.

A denoiser is any function `model(x, t) -> output` (wrap a network with `guidance.cfg_model` or
`guidance.distilled_guidance_model`, or a lambda binding the conditioning). `sample` walks the
schedule: scale the input, call the model, step the scheduler, carry the solver state. The
scheduler and schedule are never mutated, so concurrent runs with one pipeline are safe.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, NamedTuple

import torch

from utils.torch_utils import Generators
from utils.diffusion.schedulers import Schedule, Scheduler

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class StepInfo(NamedTuple):
    """What a callback sees after step `i`."""

    i: int
    t: torch.Tensor
    latents: torch.Tensor
    denoised: torch.Tensor | None
    num_calls: int


Callback = Callable[[StepInfo], "torch.Tensor | None"]
Interrupt = Callable[[], bool] | threading.Event | None


class SampleResult(NamedTuple):
    latents: torch.Tensor
    interrupted: bool
    steps_done: int


def _interrupted(interrupt: Interrupt) -> bool:
    if interrupt is None:
        return False
    if isinstance(interrupt, threading.Event):
        return interrupt.is_set()
    return bool(interrupt())


def sample(model: Denoiser, scheduler: Scheduler, schedule: Schedule, latents: torch.Tensor, *,
           generator: Generators = None, start: int = 0, callback: Callback | None = None,
           interrupt: Interrupt = None, progress: bool = True, model_time: Callable[[torch.Tensor], Any] | None = None,
           inpaint: "InpaintBlend | None" = None, return_result: bool = False) -> torch.Tensor | SampleResult:
    """Run `scheduler` over `schedule` from index `start`; returns the final latents.

    `latents` are the starting sample (already scaled by `schedule.init_noise_sigma`, or noised by
    `img2img_latents`). `callback(info)` runs after every model call and may return replacement
    latents. `interrupt` (a callable or a threading.Event) is checked before each call; when set,
    the loop stops and returns the current latents (`return_result=True` says so). `model_time`
    maps a schedule timestep to what the model is given (default: a (B,) tensor of it).
    """
    x = latents
    state: Any = None
    steps = range(start, len(schedule.timesteps))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(steps), desc="sampling", leave=False)
    done = 0
    stopped = False
    try:
        for i in steps:
            if _interrupted(interrupt):
                stopped = True
                break
            t = schedule.timesteps[i]
            tm = model_time(t) if model_time is not None else t.to(x.device).expand(x.shape[0])
            out = model(scheduler.scale_model_input(x, i, schedule), tm)
            res = scheduler.step(out, x, i, schedule, generator=generator, state=state)
            x, state = res.prev_sample, res.state
            if inpaint is not None:
                x = inpaint(x, i, scheduler, schedule)
            done += 1
            if callback is not None:
                replaced = callback(StepInfo(i, t, x, res.denoised, done))
                if replaced is not None:
                    x = replaced
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return SampleResult(x, stopped, done) if return_result else x


# -- img2img and inpainting -------------------------------------------------------------------------

def img2img_start(num_steps: int, strength: float, order: int = 1) -> int:
    """Index into `schedule.timesteps` where an img2img run starts (strength 1 = from pure noise)."""
    if not 0.0 <= strength <= 1.0:
        from utils.errors import UserError

        raise UserError(f"strength must be between 0 and 1, got {strength}")
    kept = min(int(num_steps * strength), num_steps)
    return max(num_steps - kept, 0) * order


def img2img_latents(scheduler: Scheduler, schedule: Schedule, init_latents: torch.Tensor, noise: torch.Tensor,
                    start: int) -> torch.Tensor:
    """The starting sample of an img2img run: the clean latents noised to the level at `start`."""
    if start >= len(schedule.timesteps):
        return init_latents
    return scheduler.add_noise(init_latents, noise, start, schedule)


class InpaintBlend:
    """After each step, put back the known region (mask == 0) at the noise level of the next step.

    `mask` is 1 where new content is generated and 0 where `init_latents` is kept; the last step
    keeps the clean latents themselves.
    """

    def __init__(self, init_latents: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor):
        self.init_latents, self.mask, self.noise = init_latents, mask, noise

    def __call__(self, x: torch.Tensor, i: int, scheduler: Scheduler, schedule: Schedule) -> torch.Tensor:
        nxt = i + getattr(scheduler, "order", 1)
        known = self.init_latents
        if nxt < len(schedule.timesteps):
            known = scheduler.add_noise(self.init_latents, self.noise, nxt, schedule)
        return blend(x, known, self.mask)


def blend(generated: torch.Tensor, known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mask * generated + (1 - mask) * known."""
    mask = mask.to(generated.dtype)
    return mask * generated + (1 - mask) * known


# -- partial schedules (the SDXL base/refiner hand-off) ------------------------------------------------

def cutoff_steps(timesteps: torch.Tensor, fraction: float, num_train: int = 1000) -> int:
    """How many steps of a schedule lie at or above the noise level `fraction` of the way through
    training time (the base model's share with `denoising_end`)."""
    cutoff = int(round(num_train - fraction * num_train))
    return int((timesteps >= cutoff).sum().item())


def start_index(timesteps: torch.Tensor, fraction: float, order: int = 1, num_train: int = 1000) -> int:
    """Where a run resumes with `denoising_start`: the first step below the cutoff (two-stage solvers
    start on a full step)."""
    cutoff = int(round(num_train - fraction * num_train))
    n = int((timesteps < cutoff).sum().item())
    if order == 2 and n % 2 == 0:
        n += 1
    return len(timesteps) - n


class StopAfter:
    """An `interrupt` for `sample` that stops after `n` model calls (and honours a user interrupt);
    pass its `count` as (or from) the callback."""

    def __init__(self, n: int | None, user: Interrupt = None):
        self.n, self.user, self.calls = n, user, 0

    def count(self, info: StepInfo) -> None:
        self.calls = info.num_calls

    def __call__(self) -> bool:
        if self.n is not None and self.calls >= self.n:
            return True
        return _interrupted(self.user)


__all__ = ["Denoiser", "InpaintBlend", "SampleResult", "StepInfo", "StopAfter", "blend", "cutoff_steps",
           "img2img_latents", "img2img_start", "sample", "start_index"]

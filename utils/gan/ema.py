"""Exponential moving average of a generator's weights."""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn


class EMA:
    """Keeps `shadow`, an eval-mode copy of `model` whose parameters follow an EMA.

    `rampup` shortens the horizon early in training: beta = min(beta, (1 + step) / (10 + step)).
    `schedule` (step -> beta) replaces both, e.g. StyleGAN2-ADA's half-life ramp-up (`stylegan_ema_beta`).
    """

    def __init__(self, model: nn.Module, beta: float = 0.999, rampup: bool = True,
                 schedule: Callable[[int], float] | None = None):
        self.beta = beta
        self.rampup = rampup
        self.schedule = schedule
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    def beta_at(self, step: int) -> float:
        if self.schedule is not None:
            return float(self.schedule(step))
        return min(self.beta, (1 + step) / (10 + step)) if self.rampup else self.beta

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        beta = self.beta_at(step)
        for s, p in zip(self.shadow.parameters(), model.parameters()):
            s.lerp_(p.detach().to(s.dtype), 1 - beta)
        for s, b in zip(self.shadow.buffers(), model.buffers()):
            s.copy_(b)

    def state_dict(self) -> dict:
        return self.shadow.state_dict()

    def load_state_dict(self, sd: dict) -> None:
        self.shadow.load_state_dict(sd)


def stylegan_ema_beta(images_seen: int, batch_size: int, ema_kimg: float = 10.0, rampup: float | None = 0.05) -> float:
    """StyleGAN2-ADA / StyleGAN3's G_ema decay: a half-life of ema_kimg thousand images, ramped up as
    min(ema_kimg * 1000, rampup * images_seen) early in training (so the first steps copy G)."""
    half_life = ema_kimg * 1000
    if rampup is not None:
        half_life = min(half_life, images_seen * rampup)
    return 0.5 ** (batch_size / max(half_life, 1e-8))

"""Exponential moving average of a generator's weights."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps `shadow`, an eval-mode copy of `model` whose parameters follow an EMA.

    `rampup` (as in StyleGAN2-ADA) shortens the horizon early in training:
    beta = min(beta, (1 + step) / (10 + step)).
    """

    def __init__(self, model: nn.Module, beta: float = 0.999, rampup: bool = True):
        self.beta = beta
        self.rampup = rampup
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        beta = min(self.beta, (1 + step) / (10 + step)) if self.rampup else self.beta
        for s, p in zip(self.shadow.parameters(), model.parameters()):
            s.lerp_(p.detach().to(s.dtype), 1 - beta)
        for s, b in zip(self.shadow.buffers(), model.buffers()):
            s.copy_(b)

    def state_dict(self) -> dict:
        return self.shadow.state_dict()

    def load_state_dict(self, sd: dict) -> None:
        self.shadow.load_state_dict(sd)

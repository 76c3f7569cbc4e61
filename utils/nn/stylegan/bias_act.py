"""Bias, activation, gain and clamp in one call: the StyleGAN family's epilogue of every layer.

`bias_act(x, b, act='lrelu')` adds the per-channel bias `b` along `dim`, applies the activation,
multiplies by its gain (sqrt(2) for the ReLU family, so that unit-variance inputs keep unit
variance, He et al. 2015) and clamps to [-clamp, clamp] when `clamp` is given.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

__all__ = ["Activation", "ACTIVATIONS", "bias_act"]


@dataclass(frozen=True)
class Activation:
    """One activation of `bias_act`."""

    fn: Callable[[Tensor, float], Tensor]
    """The function of (x, alpha)."""
    alpha: float
    """The default shape parameter (the negative slope of the leaky ReLU)."""
    gain: float
    """The default output gain that keeps the variance of unit-variance inputs."""


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0),
    "relu": Activation(lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": Activation(lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2)),
    "tanh": Activation(lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": Activation(lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": Activation(lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": Activation(lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": Activation(lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}


def bias_act(x: Tensor, b: Tensor | None = None, dim: int = 1, act: str = "linear", alpha: float | None = None,
             gain: float | None = None, clamp: float | None = None) -> Tensor:
    """x + b (broadcast along `dim`), then the activation, times `gain`, clamped to +-`clamp`."""
    spec = ACTIVATIONS[act]
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.reshape(shape)
    x = spec.fn(x, float(spec.alpha if alpha is None else alpha))
    g = float(spec.gain if gain is None else gain)
    if g != 1:
        x = x * g
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x

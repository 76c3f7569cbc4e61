"""Adversarial losses over discriminator logits: each is a (d_loss, g_loss) pair of functions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from utils.errors import UserError, did_you_mean

Tensor = torch.Tensor


def _ns_d(real: Tensor, fake: Tensor) -> Tensor:
    # -log D(x) - log(1 - D(G(z))) written with softplus for stability
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def _ns_g(fake: Tensor) -> Tensor:
    return F.softplus(-fake).mean()


def _hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def _hinge_g(fake: Tensor) -> Tensor:
    return -fake.mean()


def _wgan_d(real: Tensor, fake: Tensor) -> Tensor:
    return fake.mean() - real.mean()


def _wgan_g(fake: Tensor) -> Tensor:
    return -fake.mean()


def _lsgan_d(real: Tensor, fake: Tensor) -> Tensor:
    # Mao et al. 2017 with a=0, b=c=1; the 1/2 factors follow the paper
    return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake ** 2).mean()


def _lsgan_g(fake: Tensor) -> Tensor:
    return 0.5 * ((fake - 1) ** 2).mean()


@dataclass(frozen=True)
class GANLoss:
    name: str
    d_loss: Callable[[Tensor, Tensor], Tensor]
    """Discriminator loss from logits on real and on fake samples."""
    g_loss: Callable[[Tensor], Tensor]
    """Generator loss from the discriminator's logits on fake samples."""


LOSSES = {
    "non_saturating": GANLoss("non_saturating", _ns_d, _ns_g),
    "hinge": GANLoss("hinge", _hinge_d, _hinge_g),
    "wasserstein": GANLoss("wasserstein", _wgan_d, _wgan_g),
    "lsgan": GANLoss("lsgan", _lsgan_d, _lsgan_g),
}


def get_loss(name: str) -> GANLoss:
    if name not in LOSSES:
        raise UserError(f"unknown GAN loss '{name}': {did_you_mean(name, LOSSES)}")
    return LOSSES[name]

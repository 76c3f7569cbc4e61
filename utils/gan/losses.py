"""Adversarial losses over discriminator logits: each is a (d_loss, g_loss) pair of functions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from utils.errors import UserError, did_you_mean

Tensor = torch.Tensor


def non_saturating_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """-log D(x) - log(1 - D(G(z))) on logits (the original GAN's D loss, 'vanilla' in taming)."""
    # written with softplus for stability: -log sigmoid(t) = softplus(-t)
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def non_saturating_g_loss(fake: Tensor) -> Tensor:
    """-log D(G(z)): the generator loss Goodfellow et al. recommend over the saturating log(1 - D)."""
    return F.softplus(-fake).mean()


def hinge_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """mean relu(1 - D(x)) + mean relu(1 + D(G(z))) (SAGAN, BigGAN)."""
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def hinge_g_loss(fake: Tensor) -> Tensor:
    """-mean D(G(z))."""
    return -fake.mean()


def wasserstein_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """The critic's loss mean D(G(z)) - mean D(x) (WGAN; add a gradient penalty for WGAN-GP)."""
    return fake.mean() - real.mean()


def wasserstein_g_loss(fake: Tensor) -> Tensor:
    return -fake.mean()


def lsgan_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """Least squares (Mao et al. 2017) with a=0, b=c=1; the 1/2 factors follow the paper."""
    return 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake ** 2).mean()


def lsgan_g_loss(fake: Tensor) -> Tensor:
    return 0.5 * ((fake - 1) ** 2).mean()


@dataclass(frozen=True)
class GANLoss:
    """A named (d_loss, g_loss) pair; `get_loss(name)` looks one up."""

    name: str
    """The key in LOSSES (what --loss takes)."""
    d_loss: Callable[[Tensor, Tensor], Tensor]
    """Discriminator loss from logits on real and on fake samples."""
    g_loss: Callable[[Tensor], Tensor]
    """Generator loss from the discriminator's logits on fake samples."""


LOSSES = {
    "non_saturating": GANLoss("non_saturating", non_saturating_d_loss, non_saturating_g_loss),
    "hinge": GANLoss("hinge", hinge_d_loss, hinge_g_loss),
    "wasserstein": GANLoss("wasserstein", wasserstein_d_loss, wasserstein_g_loss),
    "lsgan": GANLoss("lsgan", lsgan_d_loss, lsgan_g_loss),
}


def get_loss(name: str) -> GANLoss:
    if name not in LOSSES:
        raise UserError(f"unknown GAN loss '{name}': {did_you_mean(name, LOSSES)}")
    return LOSSES[name]


__all__ = ["GANLoss", "LOSSES", "get_loss", "hinge_d_loss", "hinge_g_loss", "lsgan_d_loss", "lsgan_g_loss",
           "non_saturating_d_loss", "non_saturating_g_loss", "wasserstein_d_loss", "wasserstein_g_loss"]

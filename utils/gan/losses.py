"""Adversarial losses over discriminator logits: each is a (d_loss, g_loss) pair of functions.

The relativistic average loss (`ragan`, ESRGAN's) compares each logit with the mean logit of the other
kind, so its generator loss needs the discriminator's logits on real samples too: `GANLoss.relativistic`
says so, and its `g_loss(fake, real)` takes them.
"""
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


def ragan_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """Relativistic average GAN (Jolicoeur-Martineau 2018; ESRGAN, Wang et al. 2018, eq. 1-2), on logits:
    1/2 [BCE(C(x_r) - mean C(x_f), 1) + BCE(C(x_f) - mean C(x_r), 0)], BCE the binary cross-entropy with
    logits. Gradients flow through both means (the paper's loss); BasicSR's ESRGANModel detaches the mean
    of the other kind in each half, which changes D's gradient but not the value."""
    return 0.5 * (F.softplus(-(real - fake.mean())).mean() + F.softplus(fake - real.mean()).mean())


def ragan_g_loss(fake: Tensor, real: Tensor | None = None) -> Tensor:
    """The generator's side, with the labels swapped: 1/2 [BCE(C(x_r) - mean C(x_f), 0) +
    BCE(C(x_f) - mean C(x_r), 1)]; `real` are D's logits on real samples (no gradient needed: they do not
    depend on the generator, but the first term reaches it through mean C(x_f))."""
    if real is None:
        raise TypeError("the relativistic GAN loss needs the discriminator's logits on real samples: g_loss(fake, real)")
    real = real.detach()
    return 0.5 * (F.softplus(real - fake.mean()).mean() + F.softplus(-(fake - real.mean())).mean())


@dataclass(frozen=True)
class GANLoss:
    """A named (d_loss, g_loss) pair; `get_loss(name)` looks one up."""

    name: str
    """The key in LOSSES (what --loss takes)."""
    d_loss: Callable[[Tensor, Tensor], Tensor]
    """Discriminator loss from logits on real and on fake samples."""
    g_loss: Callable[[Tensor], Tensor]
    """Generator loss from the discriminator's logits on fake samples (and on real ones, when relativistic)."""
    relativistic: bool = False
    """True when g_loss takes (fake, real) logits: the relativistic losses."""


LOSSES = {
    "non_saturating": GANLoss("non_saturating", non_saturating_d_loss, non_saturating_g_loss),
    "hinge": GANLoss("hinge", hinge_d_loss, hinge_g_loss),
    "wasserstein": GANLoss("wasserstein", wasserstein_d_loss, wasserstein_g_loss),
    "lsgan": GANLoss("lsgan", lsgan_d_loss, lsgan_g_loss),
    "ragan": GANLoss("ragan", ragan_d_loss, ragan_g_loss, relativistic=True),
}


def get_loss(name: str) -> GANLoss:
    if name not in LOSSES:
        raise UserError(f"unknown GAN loss '{name}': {did_you_mean(name, LOSSES)}")
    return LOSSES[name]


__all__ = ["GANLoss", "LOSSES", "get_loss", "hinge_d_loss", "hinge_g_loss", "lsgan_d_loss", "lsgan_g_loss",
           "non_saturating_d_loss", "non_saturating_g_loss", "ragan_d_loss", "ragan_g_loss",
           "wasserstein_d_loss", "wasserstein_g_loss"]

"""WGAN-GP training recipe (Gulrajani et al. 2017, Algorithm 1).

Wasserstein critic loss, gradient penalty lambda = 10 at random interpolates of real and fake,
n_critic = 5 critic steps per generator step, Adam(lr 1e-4, beta1 0, beta2 0.9), batch 64.
All of it runs in the built-in loop of train/train_gan.py.
"""
from __future__ import annotations

from models.gan.wgan_gp.config import PRESETS
from models.gan.wgan_gp.model import Critic, Generator
from utils.gan.recipe import GANRecipe

PAPER = dict(loss="wasserstein", gp_weight=10.0, n_critic=5, lr_g=1e-4, lr_d=1e-4, betas=(0.0, 0.9), batch_size=64)


def recipe(preset: str = "digits") -> GANRecipe:
    config = PRESETS[preset]
    # the paper trains 200k generator steps on CIFAR-10 (gan_cifar.py: ITERS); far fewer suffice on the digits
    steps = {"cifar-32": 200_000, "digits": 3000, "tiny": 200}[preset]
    return GANRecipe(Generator(config), Critic(config), config, steps=steps, ema_beta=0.0, **PAPER)

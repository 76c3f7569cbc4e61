"""Vanilla GAN training recipe: SGD-era setup modernised to Adam, non-saturating loss (Goodfellow et al. 2014)."""
from __future__ import annotations

from models.gan.vanilla_gan.config import PRESETS
from models.gan.vanilla_gan.model import Discriminator, Generator
from utils.gan.recipe import GANRecipe


def recipe(preset: str = "digits") -> GANRecipe:
    config = PRESETS[preset]
    return GANRecipe(Generator(config), Discriminator(config), config, loss="non_saturating", lr_g=2e-4, lr_d=2e-4,
                     betas=(0.5, 0.999), batch_size=64, steps=8000, ema_beta=0.999)

"""DCGAN training recipe: Adam(2e-4, beta1 0.5), batch 128, non-saturating loss (Radford et al. 2015)."""
from __future__ import annotations

from models.gan.dcgan.config import PRESETS
from models.gan.dcgan.model import Discriminator, Generator
from utils.gan.recipe import GANRecipe


def recipe(preset: str = "digits") -> GANRecipe:
    config = PRESETS[preset]
    # The paper's recipe. The digits set has only 1437 training images: without augmentation D
    # memorises them and G collapses to one image per class, so DiffAugment (translation, cutout)
    # is on for the small presets.
    small = preset in ("digits", "tiny")
    return GANRecipe(Generator(config), Discriminator(config), config, loss="non_saturating", lr_g=2e-4, lr_d=2e-4,
                     betas=(0.5, 0.999), batch_size=64 if small else 128, steps=1500 if small else 20000,
                     ema_beta=0.999, augment="translation,cutout" if small else "")

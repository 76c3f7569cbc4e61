"""The original GAN (Goodfellow et al. 2014), with MLPs."""
from models.gan.vanilla_gan.config import PRESETS, VanillaGANConfig
from models.gan.vanilla_gan.model import Discriminator, Generator
from models.gan.vanilla_gan.pipeline import VanillaGANPipeline

VanillaGAN = VanillaGANPipeline

__all__ = ["VanillaGAN", "VanillaGANConfig", "VanillaGANPipeline", "Discriminator", "Generator", "PRESETS"]

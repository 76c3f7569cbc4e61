"""DCGAN (Radford et al. 2015)."""
from models.gan.dcgan.config import PRESETS, DCGANConfig
from models.gan.dcgan.model import Discriminator, Generator
from models.gan.dcgan.pipeline import DCGANPipeline

DCGAN = DCGANPipeline

__all__ = ["DCGAN", "DCGANConfig", "DCGANPipeline", "Discriminator", "Generator", "PRESETS"]

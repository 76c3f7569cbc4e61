"""WGAN-GP (Gulrajani et al. 2017): Wasserstein GAN with a gradient penalty."""
from models.gan.wgan_gp.config import PRESETS, WGANGPConfig
from models.gan.wgan_gp.model import Critic, Generator
from models.gan.wgan_gp.pipeline import WGANGPPipeline

WGANGP = WGANGPPipeline

__all__ = ["WGANGP", "WGANGPConfig", "WGANGPPipeline", "Critic", "Generator", "PRESETS"]

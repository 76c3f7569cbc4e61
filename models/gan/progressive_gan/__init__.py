"""Progressive GAN (Karras et al. 2017): grown from 4x4, equalized learning rate, pixel norm, minibatch std."""
from models.gan.progressive_gan.config import PRESETS, ProGANConfig
from models.gan.progressive_gan.model import Discriminator, Generator
from models.gan.progressive_gan.pipeline import ProgressiveGANPipeline

ProgressiveGAN = ProgressiveGANPipeline

__all__ = ["ProgressiveGAN", "ProgressiveGANPipeline", "ProGANConfig", "Discriminator", "Generator", "PRESETS"]

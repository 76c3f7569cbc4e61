"""CycleGAN (Zhu et al. 2017): unpaired image-to-image translation."""
from models.gan.cyclegan.config import PRESETS, CycleGANConfig
from models.gan.cyclegan.model import (CycleDiscriminators, CycleGenerators, ImagePool, PatchDiscriminator,
                                       ResnetGenerator)
from models.gan.cyclegan.pipeline import CycleGANPipeline

CycleGAN = CycleGANPipeline

__all__ = ["CycleGAN", "CycleGANPipeline", "CycleGANConfig", "CycleDiscriminators", "CycleGenerators", "ImagePool",
           "PatchDiscriminator", "ResnetGenerator", "PRESETS"]

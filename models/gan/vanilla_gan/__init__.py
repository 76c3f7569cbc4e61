"""The original GAN (Goodfellow et al. 2014), with MLPs."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "PRESETS": "config:PRESETS",
    "VanillaGANConfig": "config:VanillaGANConfig",
    "Discriminator": "model:Discriminator",
    "Generator": "model:Generator",
    "VanillaGANPipeline": "pipeline:VanillaGANPipeline",
    "VanillaGAN": "pipeline:VanillaGANPipeline",
})

"""DCGAN (Radford et al. 2015)."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "PRESETS": "config:PRESETS",
    "DCGANConfig": "config:DCGANConfig",
    "Discriminator": "model:Discriminator",
    "Generator": "model:Generator",
    "DCGANPipeline": "pipeline:DCGANPipeline",
    "DCGAN": "pipeline:DCGANPipeline",
})

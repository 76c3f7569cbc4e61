"""CycleGAN (Zhu et al. 2017): unpaired image-to-image translation."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "PRESETS": "config:PRESETS",
    "CycleGANConfig": "config:CycleGANConfig",
    "CycleDiscriminators": "model:CycleDiscriminators",
    "CycleGenerators": "model:CycleGenerators",
    "ImagePool": "model:ImagePool",
    "PatchDiscriminator": "model:PatchDiscriminator",
    "ResnetGenerator": "model:ResnetGenerator",
    "CycleGANPipeline": "pipeline:CycleGANPipeline",
    "CycleGAN": "pipeline:CycleGANPipeline",
})

"""Aetherist (a 3D-aware GAN with a ViT backbone, triplanes, a neural renderer and super-resolution) and
EG3D (the same pipeline with a StyleGAN2 backbone, NVlabs' released networks), in one package."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "AetheristConfig": "config:AetheristConfig",
    "PRESETS": "config:PRESETS",
    "TriplaneGenerator": "model:TriplaneGenerator",
    "DualDiscriminator": "model:DualDiscriminator",
    "AetheristDiscriminator": "model:AetheristDiscriminator",
    "AetheristPipeline": "pipeline:AetheristPipeline",
    "AetheristInferencePipeline": "inference:AetheristInferencePipeline",
    "BatchInferencePipeline": "inference:BatchInferencePipeline",
})

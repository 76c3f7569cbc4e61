"""VQGAN (Esser, Rombach & Ommer 2021, taming-transformers): a vector-quantised autoencoder
trained with LPIPS and a PatchGAN; images <-> grids of codebook indices."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "PRESETS": "config:PRESETS",
    "VQGANConfig": "config:VQGANConfig",
    "VQGANLossConfig": "config:VQGANLossConfig",
    "config_from_diffusers": "convert:config_from_diffusers",
    "convert_diffusers": "convert:convert_diffusers",
    "convert_state_dict": "convert:convert_state_dict",
    "split_taming": "convert:split_taming",
    "PatchDiscriminator": "discriminator:PatchDiscriminator",
    "adaptive_weight": "losses:adaptive_weight",
    "adopt_weight": "losses:adopt_weight",
    "hinge_d_loss": "losses:hinge_d_loss",
    "vanilla_d_loss": "losses:vanilla_d_loss",
    "VQGAN": "model:VQGAN",
    "VQEncoding": "model:VQEncoding",
    "VQGANPipeline": "pipeline:VQGANPipeline",
    "VectorQuantizer": "quantizer:VectorQuantizer",
})

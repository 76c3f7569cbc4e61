"""StyleGAN3 (Karras et al. 2021, "Alias-Free Generative Adversarial Networks") and StyleGAN2 (2020), in the
parameter layout of NVlabs' stylegan3 release; the building blocks live in utils/nn/stylegan."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "PRESETS": "config:PRESETS",
    "StyleGANConfig": "config:StyleGANConfig",
    "StyleGANGenerator": "model:StyleGANGenerator",
    "StyleGANDiscriminator": "model:StyleGANDiscriminator",
    "StyleGANPipeline": "pipeline:StyleGANPipeline",
    "user_transform": "pipeline:user_transform",
    "config_from_nvlabs": "convert:config_from_nvlabs",
    "convert_nvlabs": "convert:convert_nvlabs",
    "convert_rosinality": "convert:convert_rosinality",
    "Directions": "editing:Directions",
    "ganspace": "editing:ganspace",
    "interfacegan": "editing:interfacegan",
    "apply_direction": "editing:apply_direction",
    "project": "projection:project",
})

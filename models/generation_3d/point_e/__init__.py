"""OpenAI's Point-E: point-cloud diffusion transformers (base, upsampler) and the point cloud -> SDF model."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "PRESETS": "config:PRESETS",
    "PointEConfig": "config:PointEConfig",
    "SDFConfig": "config:SDFConfig",
    "get_config": "config:get_config",
    "PointETransformer": "model:PointETransformer",
    "PointESDF": "model:PointESDF",
})

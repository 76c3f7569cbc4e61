"""Sora stand-in: the Wan 2.1 / 2.2 video diffusion transformer (open weights; Sora has none).

    from models.video_generation.sora import WanTransformer, transformer_config
    model = WanTransformer(transformer_config("wan2.1-t2v-1.3b"))
"""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "TRANSFORMER_PRESETS": "config:TRANSFORMER_PRESETS",
    "WanTransformer": "model:WanTransformer",
    "WanTransformerConfig": "config:WanTransformerConfig",
    "transformer_config": "config:transformer_config",
})

"""Luma Dream Machine stand-in: the LTX-Video transformer and VAE (open weights; Dream Machine has none).

    from models.video_generation.luma_dream import LTXVideoTransformer, transformer_preset
    model = LTXVideoTransformer(transformer_preset("ltxv-2b"))
"""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "LTXTransformerConfig": "config:LTXTransformerConfig",
    "LTXVideoTransformer": "model:LTXVideoTransformer",
    "TRANSFORMER_PRESETS": "config:TRANSFORMER_PRESETS",
    "transformer_preset": "config:transformer_preset",
})

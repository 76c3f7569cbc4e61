"""Luma Dream Machine stand-in: LTX-Video (open weights; Dream Machine has none).

    from models.video_generation.luma_dream import LTXVideoPipeline
    pipe = LTXVideoPipeline.from_pretrained(preset="tiny")   # or an ltx-video-2b-v0.9*.safetensors file
    video = pipe(prompt="a fox in snow")
"""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "LTXTransformerConfig": "config:LTXTransformerConfig",
    "LTXVideoTransformer": "model:LTXVideoTransformer",
    "LTXVideoPipeline": "pipeline:LTXVideoPipeline",
    "LatentPreview": "fit_preview:LatentPreview",
    "TRANSFORMER_PRESETS": "config:TRANSFORMER_PRESETS",
    "VideoCondition": "conditions:VideoCondition",
    "transformer_preset": "config:transformer_preset",
})

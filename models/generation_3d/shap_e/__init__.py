"""OpenAI's Shap-E: text/image -> latent prior -> implicit function -> renders and textured meshes."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "PRESETS": "config:PRESETS",
    "ShapEConfig": "config:ShapEConfig",
    "PriorConfig": "config:PriorConfig",
    "DecoderConfig": "config:DecoderConfig",
    "get_config": "config:get_config",
    "ShapEPrior": "model:ShapEPrior",
    "ShapEDecoder": "model:ShapEDecoder",
    "ShapEPipeline": "pipeline:ShapEPipeline",
    "render_views": "render:render_views",
    "extract_mesh": "render:extract_mesh",
    "pan_cameras": "render:pan_cameras",
})

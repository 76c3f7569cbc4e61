"""FLUX.1 (Black Forest Labs): dev, schnell, Fill, Canny and Depth; see README.md."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "PRESETS": "model:PRESETS",
    "Flux": "model:Flux",
    "FluxParams": "model:FluxParams",
    "FluxTransformer": "model:FluxTransformer",
    "FluxPipeline": "pipeline:FluxPipeline",
})

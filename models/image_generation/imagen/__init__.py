"""Imagen stand-in: the DeepFloyd IF cascade (T5-XXL, stage I and II pixel UNets) and the SD x4 upscaler; see README.md."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "IFUNet": "unet:IFUNet",
    "IFUNetConfig": "config:IFUNetConfig",
    "IF_UNET_PRESETS": "config:IF_UNET_PRESETS",
    "UpscalerUNet": "upscaler:UpscalerUNet",
    "UpscalerUNetConfig": "config:UpscalerUNetConfig",
    "ImagenPipeline": "pipeline:ImagenPipeline",
})

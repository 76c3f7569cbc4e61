"""Stable Diffusion family: SDXL (base + refiner UNets) and SD3 / SD3.5 (MMDiT), official layouts."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "MMDIT_PRESETS": "mmdit:MMDIT_PRESETS",
    "MMDiT": "mmdit:MMDiT",
    "MMDiTConfig": "mmdit:MMDiTConfig",
    "UNET_PRESETS": "unet:UNET_PRESETS",
    "SDXLUNet": "unet:SDXLUNet",
    "UNetConfig": "unet:UNetConfig",
})

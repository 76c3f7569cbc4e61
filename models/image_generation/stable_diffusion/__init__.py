"""Stable Diffusion family: SD 1.5 / 2.1, SDXL (base + refiner UNets), their ControlNets, and SD3 / SD3.5 (MMDiT), official layouts."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "CONTROLNET_PRESETS": "controlnet:CONTROLNET_PRESETS",
    "ControlNet": "controlnet:ControlNet",
    "ControlNetConfig": "controlnet:ControlNetConfig",
    "load_controlnet": "controlnet_convert:load_controlnet",
    "MMDIT_PRESETS": "mmdit:MMDIT_PRESETS",
    "MMDiT": "mmdit:MMDiT",
    "MMDiTConfig": "mmdit:MMDiTConfig",
    "UNET_PRESETS": "unet:UNET_PRESETS",
    "SDXLUNet": "unet:SDXLUNet",
    "UNetConfig": "unet:UNetConfig",
})

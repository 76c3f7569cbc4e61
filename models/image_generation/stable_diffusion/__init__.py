"""Stable Diffusion family: SDXL (base + refiner UNets) and SD3 / SD3.5 (MMDiT), official layouts."""
from models.image_generation.stable_diffusion.mmdit import MMDIT_PRESETS, MMDiT, MMDiTConfig
from models.image_generation.stable_diffusion.unet import UNET_PRESETS, SDXLUNet, UNetConfig

__all__ = ["MMDIT_PRESETS", "MMDiT", "MMDiTConfig", "SDXLUNet", "UNET_PRESETS", "UNetConfig"]

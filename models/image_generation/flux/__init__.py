"""FLUX.1 (Black Forest Labs): dev, schnell, Fill, Canny and Depth; see README.md."""
from models.image_generation.flux.model import Flux, FluxParams, FluxTransformer, PRESETS

__all__ = ["Flux", "FluxParams", "FluxTransformer", "PRESETS"]

"""FLUX.1 (Black Forest Labs): dev, schnell, Fill, Canny and Depth; see README.md."""
from models.image_generation.flux.model import PRESETS, Flux, FluxParams, FluxTransformer
from models.image_generation.flux.pipeline import FluxPipeline

__all__ = ["Flux", "FluxParams", "FluxPipeline", "FluxTransformer", "PRESETS"]

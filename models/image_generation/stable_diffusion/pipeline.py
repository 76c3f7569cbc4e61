"""The registry's entry points: `SD15Pipeline` (sd15, sd21), `SDXLPipeline` (sdxl-base, sdxl-refiner) and `SD3Pipeline` (sd3-medium, sd3.5-*)."""
from models.image_generation.stable_diffusion.pipeline_sd15 import SD15Pipeline
from models.image_generation.stable_diffusion.pipeline_sd3 import SD3Pipeline
from models.image_generation.stable_diffusion.pipeline_sdxl import SDXLPipeline

__all__ = ["SD15Pipeline", "SD3Pipeline", "SDXLPipeline"]

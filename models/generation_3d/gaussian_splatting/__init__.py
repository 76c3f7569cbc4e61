"""3D Gaussian splatting (Kerbl et al. 2023): train, render and export radiance-field splats."""
from models.generation_3d.gaussian_splatting.config import PRESETS, GaussianSplattingConfig, TrainConfig
from models.generation_3d.gaussian_splatting.model import SPLAT_KEYS, GaussianSplatting
from models.generation_3d.gaussian_splatting.strategy import DefaultStrategy, MCMCStrategy, make_strategy

__all__ = ["GaussianSplatting", "GaussianSplattingConfig", "TrainConfig", "PRESETS", "SPLAT_KEYS",
           "DefaultStrategy", "MCMCStrategy", "make_strategy", "GaussianSplattingPipeline"]


def __getattr__(name: str):
    # the pipeline pulls in file formats and video writers: import it on first use
    if name == "GaussianSplattingPipeline":
        from models.generation_3d.gaussian_splatting.pipeline import GaussianSplattingPipeline

        return GaussianSplattingPipeline
    raise AttributeError(name)

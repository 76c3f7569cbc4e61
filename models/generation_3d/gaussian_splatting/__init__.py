"""3D Gaussian splatting (Kerbl et al. 2023): train, render and export radiance-field splats."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "PRESETS": "config:PRESETS",
    "GaussianSplattingConfig": "config:GaussianSplattingConfig",
    "TrainConfig": "config:TrainConfig",
    "SPLAT_KEYS": "model:SPLAT_KEYS",
    "GaussianSplatting": "model:GaussianSplatting",
    "DefaultStrategy": "strategy:DefaultStrategy",
    "MCMCStrategy": "strategy:MCMCStrategy",
    "make_strategy": "strategy:make_strategy",
    "Strategy": "strategy:Strategy",
    "Trainer": "training:Trainer",
    "GaussianSplattingPipeline": "pipeline:GaussianSplattingPipeline",
})

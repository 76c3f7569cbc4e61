"""Neural radiance fields (NeRF, mip-NeRF, Instant-NGP, nerfacto): train, render, export meshes."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "PRESETS": "config:PRESETS",
    "NeRFConfig": "config:NeRFConfig",
    "TrainConfig": "config:TrainConfig",
    "get_config": "config:get_config",
    "train_config": "config:train_config",
    "NeRFModel": "model:NeRFModel",
    "Trainer": "training:Trainer",
    "NeRFPipeline": "pipeline:NeRFPipeline",
    "extract_mesh": "export:extract_mesh",
    "extract_point_cloud": "export:extract_point_cloud",
})

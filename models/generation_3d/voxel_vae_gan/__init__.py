"""Multi-view 3D-VAE-GAN: voxel shapes from sparse posed views (Wu et al. 2016, extended to several views)."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "PRESETS": "config:PRESETS",
    "VoxelVAEGANConfig": "config:VoxelVAEGANConfig",
    "TrainConfig": "config:TrainConfig",
    "load_yaml_config": "config:load_yaml_config",
    "build_configs": "config:build_configs",
    "VoxelVAEGAN": "model:VoxelVAEGAN",
    "MultiViewEncoder": "model:MultiViewEncoder",
    "Generator": "model:Generator",
    "Discriminator": "model:Discriminator",
    "VoxelVAEGANTrainer": "training:VoxelVAEGANTrainer",
    "VoxelVAEGANPipeline": "pipeline:VoxelVAEGANPipeline",
})

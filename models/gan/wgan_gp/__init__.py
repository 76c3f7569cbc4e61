"""WGAN-GP (Gulrajani et al. 2017): Wasserstein GAN with a gradient penalty."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "PRESETS": "config:PRESETS",
    "WGANGPConfig": "config:WGANGPConfig",
    "Critic": "model:Critic",
    "Generator": "model:Generator",
    "WGANGPPipeline": "pipeline:WGANGPPipeline",
    "WGANGP": "pipeline:WGANGPPipeline",
})

"""Progressive GAN (Karras et al. 2017): grown from 4x4, equalized learning rate, pixel norm, minibatch std."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "PRESETS": "config:PRESETS",
    "ProGANConfig": "config:ProGANConfig",
    "Discriminator": "model:Discriminator",
    "Generator": "model:Generator",
    "ProgressiveGANPipeline": "pipeline:ProgressiveGANPipeline",
    "ProgressiveGAN": "pipeline:ProgressiveGANPipeline",
})

"""Stable Video Diffusion (SVD, SVD-XT, SVD-XT 1.1): image-to-video latent diffusion; see README.md.

    from models.video_generation.svd import SVD
    SVD.from_pretrained(preset="svd-xt")(image="in.png", seed=0).save("clip.mp4")
"""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "SVD": "pipeline:SVDPipeline",
    "SVDPipeline": "pipeline:SVDPipeline",
    "SVDUNet": "model:SVDUNet",
    "SVDUNetConfig": "config:SVDUNetConfig",
    "UNET_PRESETS": "config:UNET_PRESETS",
})

"""Runway Gen-3 stand-in (work in progress): AnimateDiff-style motion modules for an image UNet."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "MotionAdapter": "motion:MotionAdapter",
    "MotionAdapterConfig": "motion:MotionAdapterConfig",
    "MotionModule": "motion:MotionModule",
    "MotionUNet": "unet_motion:MotionUNet",
})

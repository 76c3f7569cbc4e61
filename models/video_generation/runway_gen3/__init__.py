"""Runway Gen-3 stand-in: AnimateDiff motion modules on SD 1.5, with image, video, motion-brush and ControlNet
controls (no Gen-3 weights exist)."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "MotionAdapter": "motion:MotionAdapter",
    "MotionAdapterConfig": "motion:MotionAdapterConfig",
    "MotionModule": "motion:MotionModule",
    "MotionUNet": "unet_motion:MotionUNet",
    "RunwayGen3Pipeline": "pipeline:RunwayGen3Pipeline",
})

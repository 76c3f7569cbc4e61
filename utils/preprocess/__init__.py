"""Shared preprocessors that turn user images into control images (Canny edges, depth, pose maps)."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "CONTROL_KINDS": "control:CONTROL_KINDS",
    "DEPTH_MODELS": "depth:DEPTH_MODELS",
    "canny_control": "canny:canny_control",
    "canny_edges": "canny:canny_edges",
    "control_image": "control:control_image",
    "depth_control": "depth:depth_control",
    "depth_map": "depth:depth_map",
    "estimate_depth": "depth:estimate_depth",
    "pose_map": "pose:pose_map",
})

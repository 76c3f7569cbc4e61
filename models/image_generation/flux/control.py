"""Control images for FLUX.1 Canny and Depth, computed from an input photo.

The detectors are shared (utils/preprocess/): `canny_edges` / `canny_control` (the Canny detector in torch,
thresholds 50 / 200 as the official FLUX.1 Canny pipeline) and `estimate_depth` (a transformers depth
estimator from the local cache, Depth Anything first as the official release). Both return (B, 3, H, W)
images in [-1, 1], the form the VAE encodes.
"""
from utils.preprocess.canny import canny_control, canny_edges, hysteresis, non_max_suppression, sobel
from utils.preprocess.depth import DEPTH_MODELS, estimate_depth

__all__ = ["DEPTH_MODELS", "canny_control", "canny_edges", "estimate_depth", "hysteresis", "non_max_suppression",
           "sobel"]

"""Control images by kind, in the form ControlNets take: (B, 3, H, W) RGB in [0, 1] at the output size.

    canny   a photo -> its Canny edges (white on black; lllyasviel's thresholds 100 / 200 by default)
    depth   a grey image is the depth map itself (near = bright); a colour photo goes to a depth
            estimator from the local hub cache, when one is there (utils/preprocess/depth.py)
    pose    an OpenPose skeleton rendering, used as given (checked to be one)
"""
from __future__ import annotations

from typing import Any

import torch

from utils.errors import UserError, did_you_mean

CONTROL_KINDS = ("canny", "depth", "pose")
"""The control kinds the image pipelines know, each with the preprocessor that makes its image."""


def control_image(kind: str, image: Any, size: tuple[int, int], *, low: float = 100.0, high: float = 200.0,
                  estimator: Any = None, what: str = "the control image") -> torch.Tensor:
    """The control image of `kind` from `image` (a path, PIL image or (B, 3, H, W) tensor in [0, 1]),
    resized to `size` (h, w); returns (B, 3, h, w) in [0, 1]."""
    from utils.data.image_inputs import load_image
    from utils.preprocess.canny import canny_control
    from utils.preprocess.depth import depth_control
    from utils.preprocess.pose import pose_map

    if kind not in CONTROL_KINDS:
        raise UserError(f"unknown control kind '{kind}': {did_you_mean(kind, CONTROL_KINDS)}")
    if image is None:
        raise UserError(f"control '{kind}' needs an image: pass control_image= (CLI: --control-image PATH)")
    x = load_image(image, size)  # [-1, 1]
    if kind == "canny":
        out = canny_control(x, low, high)
    elif kind == "depth":
        out = depth_control(x, estimator)
    else:
        out = pose_map(x, what)
    return ((out.float() + 1) / 2).clamp(0, 1)


__all__ = ["CONTROL_KINDS", "control_image"]

"""Pose control images given as images: an OpenPose skeleton rendering (coloured limbs and joints on black).

No pose estimator ships here (OpenPose / DWPose weights are not in any installed package): the map is
made elsewhere and passed in. `pose_map` checks that the image is one, so a photo passed by mistake
fails with one line instead of steering the ControlNet with noise.
"""
from __future__ import annotations

import torch

from utils.errors import UserError

BACKGROUND_FRACTION = 0.5
"""A pose rendering is mostly black background: at least this fraction of its pixels is near black."""


def pose_map(image: torch.Tensor, what: str = "the pose map") -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1], checked to be a skeleton rendering, returned as is (contiguous)."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise UserError(f"{what} must be an RGB image (B, 3, H, W), got shape {tuple(image.shape)}")
    unit = (image.float().clamp(-1, 1) + 1) / 2
    dark = (unit.amax(dim=1) < 0.1).float().mean(dim=(1, 2))  # per image: share of near-black pixels
    if bool((unit.amax(dim=(1, 2, 3)) < 0.1).any()):
        raise UserError(f"{what} is black everywhere: it shows no skeleton; pass an OpenPose rendering "
                        "(coloured limbs on black)")
    if bool((dark < BACKGROUND_FRACTION).any()):
        raise UserError(f"{what} looks like a photo, not a pose rendering (only {float(dark.min()):.0%} of it is "
                        "black background): pass an OpenPose skeleton image; no pose estimator ships here")
    return image.contiguous()


__all__ = ["BACKGROUND_FRACTION", "pose_map"]

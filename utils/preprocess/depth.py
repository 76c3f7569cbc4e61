"""Depth control images: a given depth map, or one estimated from a photo.

- `depth_map`: a depth map given as an image (grey, near = bright, the convention of MiDaS / Depth
  Anything and of every depth ControlNet) -> min-max normalised, 3 channels.
- `estimate_depth`: a transformers depth estimator (Depth Anything, as FLUX.1 Depth's release, or DPT /
  MiDaS as lllyasviel's ControlNet annotator) when its weights are in the local hub cache; otherwise a
  one-line error asking for the depth map itself (nothing is downloaded at run time).
- `looks_like_depth_map`: an image whose three channels are equal (a grey picture) is taken as a map.

All take and return (B, 3, H, W) images in [-1, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from utils.errors import UserError


DEPTH_MODELS = ("LiheYoung/depth-anything-large-hf", "depth-anything/Depth-Anything-V2-Large-hf", "Intel/dpt-large",
                "Intel/dpt-hybrid-midas")
"""Depth estimators tried, in order, from the local hub cache (the first is the official release's choice)."""


def _load_depth_estimator(device: torch.device):
    """(processor, model) of the first depth estimator in DEPTH_MODELS found in the local cache, or None."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    from utils.weights import hub_cache_dir

    for repo in DEPTH_MODELS:
        try:
            processor = AutoImageProcessor.from_pretrained(repo, local_files_only=True, cache_dir=hub_cache_dir())
            model = AutoModelForDepthEstimation.from_pretrained(repo, local_files_only=True, cache_dir=hub_cache_dir())
        except (OSError, ValueError):
            continue
        return processor, model.to(device).eval()
    return None


@torch.inference_mode()
def estimate_depth(image: torch.Tensor, estimator=None) -> torch.Tensor:
    """Depth control image of (B, 3, H, W) images in [-1, 1] -> (B, 3, H, W) in [-1, 1] (near = bright).

    `estimator`: a (processor, model) pair of transformers; by default the first of DEPTH_MODELS in the
    local cache. Each map is min-max normalised, as depth control images are drawn.
    """
    found = estimator or _load_depth_estimator(image.device)
    if found is None:
        raise UserError("a depth control needs a depth map and no depth estimator is in the local cache: pass the "
                        "depth map itself (a grey image, near = bright), or download one once "
                        f"(`hf download {DEPTH_MODELS[0]}`) and pass the photo")
    processor, model = found
    h, w = image.shape[-2:]
    pixels = ((image.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    inputs = processor(images=list(pixels), return_tensors="pt")
    param = next(model.parameters())
    depth = model(pixel_values=inputs["pixel_values"].to(param.device, param.dtype)).predicted_depth
    depth = F.interpolate(depth[:, None].float(), size=(h, w), mode="bicubic", align_corners=False)
    return _normalise(depth).expand(-1, 3, -1, -1).to(image.device, image.dtype).contiguous()


def _normalise(depth: torch.Tensor) -> torch.Tensor:
    """Per-image min-max to [-1, 1] (a flat map becomes -1: far everywhere)."""
    lo = depth.amin(dim=(2, 3), keepdim=True)
    hi = depth.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    unit = torch.where(span > 0, (depth - lo) / torch.where(span > 0, span, 1.0), torch.zeros_like(depth))
    return unit * 2 - 1


def looks_like_depth_map(image: torch.Tensor, tolerance: float = 2.0 / 255) -> bool:
    """True when every image of (B, 3, H, W) in [-1, 1] is grey (its channels equal within `tolerance`)."""
    if image.shape[1] == 1:
        return True
    spread = image.amax(dim=1) - image.amin(dim=1)
    return bool(spread.max() <= 2 * tolerance)


def depth_map(image: torch.Tensor) -> torch.Tensor:
    """A depth map given as an image, (B, 1 or 3, H, W) in [-1, 1] -> (B, 3, H, W) normalised, near = bright."""
    if image.ndim != 4 or image.shape[1] not in (1, 3):
        raise UserError(f"a depth map must be (B, 1 or 3, H, W), got shape {tuple(image.shape)}")
    grey = image.float().mean(1, keepdim=True)
    return _normalise(grey).expand(-1, 3, -1, -1).to(image.dtype).contiguous()


def depth_control(image: torch.Tensor, estimator=None) -> torch.Tensor:
    """A grey image is the depth map itself; a colour photo goes to `estimate_depth` (cached estimator)."""
    return depth_map(image) if looks_like_depth_map(image) else estimate_depth(image, estimator)


__all__ = ["DEPTH_MODELS", "depth_control", "depth_map", "estimate_depth", "looks_like_depth_map"]

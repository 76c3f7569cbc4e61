"""CLIP's image preprocessing for user inputs: PIL images, paths or tensors -> normalised pixel values.

As transformers' CLIPImageProcessor: the shortest side resized to the model's input size
(bicubic), a centre crop, CLIP's mean/std. A file that is not an image is a one-line UserError.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from utils.encoders.clip_vision import CLIP_MEAN, CLIP_STD
from utils.errors import UserError


def open_image(path: str | Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
        return image
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read the image {path} ({type(err).__name__}): give a .png or .jpg picture of "
                        "the object") from None


def _torchvision_resize(im: Image.Image, side: int) -> torch.Tensor:
    """transformers 5's CLIPImageProcessor (torchvision backend): the 8-bit image resized bicubically with
    antialiasing, the long side int(side * long / short), centre-cropped; (1, 3, side, side) in [0, 1]."""
    import torchvision.transforms.v2.functional as TF
    from torchvision.transforms import InterpolationMode

    x = torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1)
    h, w = x.shape[1:]
    size = [side, int(side * w / h)] if h <= w else [int(side * h / w), side]
    x = TF.center_crop(TF.resize(x, size, interpolation=InterpolationMode.BICUBIC, antialias=True), [side, side])
    return (x.float() / 255.0)[None]


def clip_pixels(image: Any, side: int, resize: str = "pil") -> torch.Tensor:
    """(1 or B, 3, side, side) CLIP input of a PIL image, a path, or a (3, H, W) / (B, 3, H, W) tensor in [0, 1].

    `resize`: "pil" (PIL's bicubic, transformers 4's CLIPImageProcessor) or "torchvision" (transformers 5's)."""
    if resize not in ("pil", "torchvision"):
        raise UserError(f"resize must be 'pil' or 'torchvision', got '{resize}'")
    if isinstance(image, (str, Path)):
        image = open_image(image)
    if isinstance(image, Image.Image) and resize == "torchvision":
        x = _torchvision_resize(image.convert("RGB"), side)
    elif isinstance(image, Image.Image):
        im = image.convert("RGB")
        scale = side / min(im.size)
        im = im.resize((max(side, round(im.width * scale)), max(side, round(im.height * scale))),
                       Image.Resampling.BICUBIC)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im = im.crop((left, top, left + side, top + side))
        x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    elif isinstance(image, torch.Tensor):
        x = image[None] if image.ndim == 3 else image
        if x.ndim != 4 or x.shape[1] != 3:
            raise UserError(f"an image tensor must be (3, H, W) or (B, 3, H, W), got {tuple(image.shape)}")
        x = torch.nn.functional.interpolate(x.float(), size=(side, side), mode="bicubic", align_corners=False)
    else:
        raise UserError(f"image must be a PIL image, a file path or a tensor, not {type(image).__name__}")
    return (x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)


__all__ = ["clip_pixels", "open_image"]

"""The user inputs of a diffusion call: one prompt per image, an output size the model can make, and
input images batched to the outputs. Loading images and masks lives in utils.data.image_inputs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from utils.data.image_inputs import ImageInput
from utils.errors import UserError


def as_prompts(prompt: str | Sequence[str] | None, num_images: int) -> list[str]:
    """One prompt per image: a single prompt is repeated, a list must match `num_images` (or sets it)."""
    if num_images < 1:
        raise UserError(f"num_images must be at least 1, got {num_images}")
    if prompt is None:
        return [""] * num_images
    if isinstance(prompt, str):
        return [prompt] * num_images
    prompts = [str(p) for p in prompt]
    if len(prompts) == 1:
        return prompts * num_images
    if num_images not in (1, len(prompts)):
        raise UserError(f"got {len(prompts)} prompts for {num_images} images: give one prompt or one per image")
    return prompts


def check_size(height: int, width: int, multiple: int, what: str) -> None:
    """A one-line error unless both sides are positive multiples of `multiple` pixels."""
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise UserError(f"{what} generates sizes that are multiples of {multiple} pixels, got {height}x{width}: "
                        f"round to e.g. {max(multiple, round(height / multiple) * multiple)}x"
                        f"{max(multiple, round(width / multiple) * multiple)}")


def image_size(image: ImageInput) -> tuple[int, int]:
    """(height, width) of an image input (a path, a PIL image or a tensor), without decoding a file."""
    if isinstance(image, torch.Tensor):
        return int(image.shape[-2]), int(image.shape[-1])
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        if not Path(image).is_file():
            raise UserError(f"image file not found: {image}")
        with Image.open(image) as im:
            return im.height, im.width
    return image.height, image.width


def output_size(height: int | None, width: int | None, image: ImageInput | None, multiple: int, default: int,
                what: str) -> tuple[int, int]:
    """The size of a call: as given, else that of the input image snapped down to `multiple`, else
    `default`; checked to be a multiple of `multiple`."""
    if (height is None or width is None) and image is not None:
        ih, iw = image_size(image)
        height = max(multiple, ih // multiple * multiple) if height is None else height
        width = max(multiple, iw // multiple * multiple) if width is None else width
    height = default if height is None else height  # 0 is refused below, never taken for "the default"
    width = default if width is None else width
    check_size(height, width, multiple, what)
    return height, width


def batch_inputs(x: torch.Tensor, batch: int) -> torch.Tensor:
    """One input (image, mask, control) per output: a single one is repeated."""
    if x.shape[0] == batch:
        return x
    if x.shape[0] == 1:
        return x.expand(batch, *x.shape[1:]).contiguous()
    raise UserError(f"got {x.shape[0]} input images for {batch} outputs: give one image or one per output")


__all__ = ["as_prompts", "batch_inputs", "check_size", "image_size", "output_size"]

"""Pieces every text-to-image diffusion pipeline shares: prompts and sizes, partial schedules (the
SDXL base/refiner hand-off, img2img starts), stopping, and decoded pixels as an ImageOutput.
Image and mask inputs live in utils.data.image_inputs."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from utils.outputs import ImageOutput
from utils.errors import UserError

from utils.data.image_inputs import ImageInput, load_image, load_mask  # noqa: F401 (re-exported)


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
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise UserError(f"{what} generates sizes that are multiples of {multiple} pixels, got {height}x{width}: "
                        f"round to e.g. {max(multiple, round(height / multiple) * multiple)}x"
                        f"{max(multiple, round(width / multiple) * multiple)}")


def cutoff_steps(timesteps: torch.Tensor, fraction: float, num_train: int = 1000) -> int:
    """How many steps of a schedule lie at or above the noise level `fraction` of the way through
    training time (the base model's share with `denoising_end`)."""
    cutoff = int(round(num_train - fraction * num_train))
    return int((timesteps >= cutoff).sum().item())


def start_index(timesteps: torch.Tensor, fraction: float, order: int = 1, num_train: int = 1000) -> int:
    """Where a run resumes with `denoising_start`: the first step below the cutoff (two-stage solvers
    start on a full step)."""
    cutoff = int(round(num_train - fraction * num_train))
    n = int((timesteps < cutoff).sum().item())
    if order == 2 and n % 2 == 0:
        n += 1
    return len(timesteps) - n


class StopAfter:
    """An `interrupt` for `sample` that stops after `n` model calls (and honours a user interrupt)."""

    def __init__(self, n: int | None, user: Any = None):
        self.n, self.user, self.calls = n, user, 0

    def count(self, info) -> None:
        self.calls = info.num_calls

    def __call__(self) -> bool:
        if self.n is not None and self.calls >= self.n:
            return True
        if self.user is None:
            return False
        return self.user.is_set() if hasattr(self.user, "is_set") else bool(self.user())


def to_output(pixels: torch.Tensor | None, latents: torch.Tensor) -> ImageOutput:
    """Decoded pixels in [-1, 1] -> an ImageOutput (PIL images, `pixels` in [0, 1], `latents`);
    no pixels (latent output) gives an output with the latents only."""
    if pixels is None:
        return ImageOutput(images=[], latents=latents)
    return ImageOutput.from_tensor(pixels, latents=latents)


__all__ = ["ImageInput", "StopAfter", "as_prompts", "check_size", "cutoff_steps", "load_image", "load_mask",
           "start_index", "to_output"]

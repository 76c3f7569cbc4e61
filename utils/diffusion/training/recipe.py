"""`DiffusionRecipe`: what a model tells the diffusion trainer (utils.diffusion.training.trainer) about
itself. A package's `training.py` subclasses it; the trainer owns everything else (data, modes, LoRA,
optimisation, checkpoints, logs).

A recipe says:
- `denoiser_attr`: the pipeline attribute that trains ('unet', 'transformer');
- `objective()`: `NoisePrediction` (UNets) or `FlowMatching` (transformers), from the config;
- `text_features(prompts)`: the text encoders' outputs a batch conditions on (with gradients when a
  text-encoder LoRA trains: the trainer decides the grad mode); cached to disk as they are;
- `predict(model, x_t, time, features, batch)`: one denoiser call (with FLUX's packing and ids, SDXL's
  micro-conditioning from the batch's sizes and crop, FLUX dev's fixed guidance...);
- `lora_targets(groups)` and `text_lora_components()`: which layers a LoRA adapts;
- `enable_gradient_checkpointing()`, `sample(prompts, seed, steps, size)`.
"""
from __future__ import annotations

import functools
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from utils.diffusion.training.config import TrainConfig


def checkpoint_blocks(blocks: Iterable[nn.Module]) -> None:
    """Recompute each block's activations in the backward pass (torch.utils.checkpoint, non-reentrant);
    without grad (sampling) the blocks run as before. Weights and state-dict keys are untouched."""
    for block in blocks:
        if getattr(block, "_checkpointed", False):
            continue
        inner = block.forward

        @functools.wraps(inner)
        def forward(*args: Any, _inner=inner, **kwargs: Any) -> Any:
            if torch.is_grad_enabled():
                return torch.utils.checkpoint.checkpoint(_inner, *args, use_reentrant=False, **kwargs)
            return _inner(*args, **kwargs)

        block.forward = forward
        block._checkpointed = True


def encode_clip(encoder: Any, prompts: Sequence[str]) -> Any:
    """A CLIP (or T5) encoder's full output for `prompts`, outside inference mode (so gradients can flow)."""
    tokens = encoder.tokenize(list(prompts))
    return encoder(tokens["input_ids"])


class DiffusionRecipe:
    """The model-specific half of a diffusion training run; see the module docstring."""

    denoiser_attr = "unet"

    def __init__(self, pipe: Any, config: TrainConfig):
        self.pipe, self.config = pipe, config

    @property
    def denoiser(self) -> nn.Module:
        return getattr(self.pipe, self.denoiser_attr)

    @property
    def pixel_multiple(self) -> int:
        return self.pipe.pixel_multiple

    def frozen_modules(self) -> list[nn.Module]:
        """The models that never train (the VAE, text encoders unless a text LoRA trains)."""
        return [m for name, m in self.pipe.named_components() if name != self.denoiser_attr]

    def objective(self):
        raise NotImplementedError

    def text_features(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def predict(self, model: nn.Module, x_t: torch.Tensor, time: torch.Tensor, features: dict[str, torch.Tensor],
                batch: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def lora_targets(self, groups: tuple[str, ...]) -> list[str]:
        raise NotImplementedError

    def text_lora_components(self) -> list[tuple[str, nn.Module, list[str]]]:
        """(pipeline attribute, transformers model, target layer names) of each text encoder a LoRA may train."""
        return []

    def enable_gradient_checkpointing(self) -> None:
        raise NotImplementedError

    def latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """The VAE posterior moments (B, 2C, h, w) of pixels in [-1, 1] (no grad)."""
        vae = self.pipe.vae
        with torch.no_grad():
            return vae.encode(pixels.to(vae.device, vae.dtype)).moments.float()

    def sample_latents(self, moments: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Scaled latents drawn from posterior moments with the step's generator."""
        from utils.encoders.vae import DiagonalGaussian

        return self.pipe.vae.scale_latents(DiagonalGaussian(moments.float()).sample(generator))

    def sample(self, prompts: Sequence[str], seed: int, steps: int, size: tuple[int, int]) -> torch.Tensor:
        """(B, 3, H, W) images in [0, 1] made by the pipeline as it is now (for sample grids, class images)."""
        out = self.pipe(prompt=list(prompts), steps=steps, seed=seed, height=size[0], width=size[1], progress=False)
        for _, module in self.pipe.named_components():
            thaw(module)
        return out.pixels


def thaw(module: nn.Module) -> None:
    """Give back ordinary tensors to the weights a pipeline call replaced in inference mode (a UNet moves
    itself to channels-last on its first CPU call): autograd cannot save inference tensors for backward."""
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            if t.is_inference():
                t.data = t.data.clone()


__all__ = ["DiffusionRecipe", "checkpoint_blocks", "encode_clip", "thaw"]

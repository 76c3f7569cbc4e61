"""What a GAN package hands to train/train_gan.py: its networks and its paper's hyperparameters."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn


@dataclass
class GANRecipe:
    """A latent GAN ready to train. Fields left at their defaults follow the DCGAN paper."""

    generator: nn.Module
    """forward(z, labels=None) -> images in [-1, 1]; has `latent_shape`."""
    discriminator: nn.Module
    """forward(images, labels=None) -> one logit (or critic value) per image."""
    config: Any
    """The model's config dataclass: stored in checkpoints and exported weights."""
    loss: str = "non_saturating"
    """One of utils.gan.losses.LOSSES: non_saturating, hinge, wasserstein, lsgan."""
    lr_g: float = 2e-4
    """Generator learning rate (TTUR: may differ from lr_d)."""
    lr_d: float = 2e-4
    """Discriminator learning rate."""
    betas: tuple[float, float] = (0.5, 0.999)
    """Adam betas for both networks."""
    n_critic: int = 1
    """Discriminator steps per generator step (5 for WGAN-GP)."""
    gp_weight: float = 0.0
    """Weight of the WGAN-GP gradient penalty (10 in the paper), 0 to disable."""
    r1_weight: float = 0.0
    """Weight gamma of the R1 penalty (applied as gamma/2 * R1), 0 to disable."""
    ema_beta: float = 0.999
    """EMA decay of the generator's weights; 0 disables EMA."""
    augment: str = ""
    """DiffAugment policy ('color,translation,cutout'), 'ada' for an adaptive probability, '' for none."""
    batch_size: int = 64
    """Images per step and process."""
    steps: int = 2000
    """Generator steps."""
    lr_decay_start: int = 0
    """Linear learning-rate decay (CycleGAN): constant until this step, then linearly towards 0 at the last
    step; 0 keeps the learning rates constant."""
    train_step: Callable[["StepContext"], dict[str, float]] | None = None
    """A model's own training step (CycleGAN's two generators, ProGAN's growing schedule), replacing the
    built-in D/G updates; it returns the step's log (with 'loss_d' and 'loss_g')."""
    make_dataset: Callable[[str], Any] | None = None
    """Builds the training data from --dataset (e.g. unpaired A/B folders); None reads images as usual."""
    sampler: Callable[[nn.Module], torch.Tensor] | None = None
    """Images for the sample grids from the (EMA) generator; None draws fixed latents."""
    ema_schedule: Callable[[int, Any], float] | None = None
    """The EMA decay of a step from (step, settings), replacing ema_beta's fixed decay and ramp-up
    (StyleGAN's half-life in images, `utils.gan.ema.stylegan_ema_beta`); --ema 0 still turns EMA off."""


@dataclass
class StepContext:
    """What a recipe's `train_step` gets for one generator step; randomness comes from `generator` only,
    so a resumed run repeats the same steps bit for bit."""

    step: int
    """The 0-based index of this generator step."""
    generator: torch.Generator
    """The step's seeded CPU generator."""
    G: nn.Module
    D: nn.Module
    opt_g: Any
    opt_d: Any
    accelerator: Any
    settings: Any
    """train_gan's Settings (loss, gp_weight, steps, batch size...)."""
    next_batch: Callable[[], dict[str, Any]]
    """The next batch of the step's n_critic batches: tensors already on the device."""
    device: torch.device

    def unwrap(self, module: nn.Module) -> nn.Module:
        return self.accelerator.unwrap_model(module)

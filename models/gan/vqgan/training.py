"""One VQGAN training step as plain functions over (models, batch, optimizers).

A step is two updates, as in taming-transformers: the autoencoder (reconstruction + LPIPS +
codebook + adaptively weighted adversarial loss), then the PatchGAN discriminator (hinge loss
on real images and detached reconstructions). Both adversarial terms are off before
`loss.disc_start`. Pass `backward=accelerator.backward` to train under accelerate.

    from models.gan.vqgan import VQGAN, PatchDiscriminator, PRESETS, training
    logs = training.train_step(model, disc, perceptual, images, opt_ae, opt_d, step, config.loss)
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from models.gan.vqgan.config import VQGANLossConfig
from models.gan.vqgan.losses import D_LOSSES, adaptive_weight, adopt_weight, reconstruction_loss
from models.gan.vqgan.model import VQGAN

Perceptual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Backward = Callable[[torch.Tensor], None]


def images_of(batch: Any) -> torch.Tensor:
    """The image tensor of a batch: a tensor, an (images, labels) pair, or a dict with 'image(s)'."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, Mapping):
        for key in ("image", "images", "pixel_values"):
            if key in batch:
                return batch[key]
        raise KeyError(f"a VQGAN batch dict needs an 'image' entry, got keys {sorted(batch)}")
    if isinstance(batch, (list, tuple)):
        return batch[0]
    raise TypeError(f"unsupported batch type {type(batch).__name__}")


def autoencoder_loss(model: VQGAN, discriminator: torch.nn.Module, perceptual: Perceptual | None,
                     x: torch.Tensor, xrec: torch.Tensor, codebook_loss: torch.Tensor, global_step: int,
                     cfg: VQGANLossConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The autoencoder's objective: rec + lambda * factor * g_loss + codebook_weight * codebook."""
    rec, p = reconstruction_loss(x, xrec, perceptual, cfg.perceptual_weight)
    factor = adopt_weight(cfg.disc_factor, global_step, cfg.disc_start)
    g_loss = -discriminator(xrec.contiguous()).mean()
    if factor > 0 and torch.is_grad_enabled():
        d_weight = adaptive_weight(rec, g_loss, model.last_layer, cfg.disc_weight)
    else:
        d_weight = torch.zeros((), device=x.device)
    total = rec + d_weight * factor * g_loss + cfg.codebook_weight * codebook_loss.mean()
    logs = {"ae/total": total.item(), "ae/rec": rec.item(), "ae/perceptual": p.item(),
            "ae/codebook": codebook_loss.mean().item(), "ae/g_loss": g_loss.item(),
            "ae/d_weight": float(d_weight), "ae/disc_factor": float(factor)}
    return total, logs


def discriminator_loss(discriminator: torch.nn.Module, x: torch.Tensor, xrec: torch.Tensor, global_step: int,
                       cfg: VQGANLossConfig) -> tuple[torch.Tensor, dict[str, float]]:
    factor = adopt_weight(cfg.disc_factor, global_step, cfg.disc_start)
    real = discriminator(x.detach())
    fake = discriminator(xrec.detach())
    loss = factor * D_LOSSES[cfg.disc_loss](real, fake)
    return loss, {"d/loss": loss.item(), "d/logits_real": real.mean().item(), "d/logits_fake": fake.mean().item()}


def autoencoder_step(model: VQGAN, discriminator: torch.nn.Module, perceptual: Perceptual | None, batch: Any,
                     optimizer: torch.optim.Optimizer, global_step: int, cfg: VQGANLossConfig,
                     backward: Backward | None = None) -> tuple[dict[str, float], torch.Tensor]:
    """Update the autoencoder (encoder, codebook, decoder); returns (logs, reconstructions)."""
    x = images_of(batch)
    xrec, codebook_loss, _ = model(x)
    loss, logs = autoencoder_loss(model, discriminator, perceptual, x, xrec, codebook_loss, global_step, cfg)
    optimizer.zero_grad(set_to_none=True)
    (backward or torch.Tensor.backward)(loss)
    optimizer.step()
    return logs, xrec.detach()


def discriminator_step(discriminator: torch.nn.Module, batch: Any, reconstructions: torch.Tensor,
                       optimizer: torch.optim.Optimizer, global_step: int, cfg: VQGANLossConfig,
                       backward: Backward | None = None) -> dict[str, float]:
    """Update the discriminator on real images and (detached) reconstructions. Skipped (no
    optimizer step) before `disc_start`, where its loss is zero."""
    x = images_of(batch)
    loss, logs = discriminator_loss(discriminator, x, reconstructions, global_step, cfg)
    if adopt_weight(cfg.disc_factor, global_step, cfg.disc_start) > 0:
        optimizer.zero_grad(set_to_none=True)
        (backward or torch.Tensor.backward)(loss)
        optimizer.step()
    return logs


def train_step(model: VQGAN, discriminator: torch.nn.Module, perceptual: Perceptual | None, batch: Any,
               ae_optimizer: torch.optim.Optimizer, d_optimizer: torch.optim.Optimizer, global_step: int,
               cfg: VQGANLossConfig, backward: Backward | None = None) -> dict[str, float]:
    """Autoencoder update, then discriminator update, on one batch."""
    logs, xrec = autoencoder_step(model, discriminator, perceptual, batch, ae_optimizer, global_step, cfg, backward)
    logs.update(discriminator_step(discriminator, batch, xrec, d_optimizer, global_step, cfg, backward))
    return logs


def make_optimizers(model: VQGAN, discriminator: torch.nn.Module, lr: float = 4.5e-6, batch_size: int = 1,
                    ) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam(0.5, 0.9) for both, at taming's base_learning_rate scaled by the batch size as it does."""
    lr = lr * batch_size
    ae = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.9))
    d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.9))
    return ae, d


def default_perceptual(device: str | torch.device | None = None) -> Perceptual:
    """LPIPS(vgg) with its ImageNet backbone (evaluate.lpips), frozen, as taming uses."""
    from evaluate.lpips import LPIPS

    return LPIPS.from_pretrained("vgg", device=device).requires_grad_(False).eval()

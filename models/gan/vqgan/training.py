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
from utils.gan.losses import hinge_g_loss

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
    g_loss = hinge_g_loss(discriminator(xrec.contiguous()))
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
    """LPIPS(vgg) with its ImageNet backbone (utils.metrics.lpips), frozen, as taming uses."""
    from utils.metrics.lpips import LPIPS

    return LPIPS.from_pretrained("vgg", device=device).requires_grad_(False).eval()


# -- train/train_gan.py recipe ---------------------------------------------------------------------

PERCEPTUAL_MODES = ("auto", "lpips", "random", "none")
"""How the recipe gets its LPIPS: 'auto' = LPIPS(vgg) with its ImageNet backbone when it is cached or can be
downloaded, else a logged fallback to perceptual weight 0 (L1 only); 'lpips' = the same but an error when
the backbone is missing; 'random' = LPIPS(vgg) with a random backbone (tests only: not a perceptual loss);
'none' = perceptual weight 0."""
SMALL_LR = 2e-4
"""Learning rate of the small presets (taming's 4.5e-6 x batch would need far more steps on digits)."""


def _build_perceptual(mode: str, device: torch.device) -> tuple[Perceptual | None, str]:
    """(the perceptual module or None, a note for the log) for a PERCEPTUAL_MODES value."""
    import logging

    from utils.metrics.lpips import LPIPS
    from utils.errors import WeightsError

    if mode == "none":
        return None, "off (perceptual='none')"
    # torchvision initialises the backbone from the global RNG: keep that out of the training's RNG stream
    with torch.random.fork_rng(devices=[]):
        if mode == "random":
            return LPIPS("vgg", heads=False).to(device).requires_grad_(False).eval(), "LPIPS(vgg) random backbone"
        try:
            return default_perceptual(device), "LPIPS(vgg)"
        except WeightsError as err:
            if mode == "lpips":
                raise
            logging.getLogger("train_gan.vqgan").warning(
                "VQGAN: LPIPS is unavailable (%s); training with perceptual weight 0 (L1 + codebook + GAN only). "
                "Put the VGG16 weights in the torch hub cache for the paper's loss.", err)
            return None, f"off (LPIPS unavailable: {err})"


def recipe(preset: str = "tiny", disc_start: int | None = None, perceptual: str = "auto"):
    """VQGAN's recipe for train_gan.py: `train_step` through the hook; the exported weights are the autoencoder.

    The loop's G is the VQGAN autoencoder and its D the PatchGAN; both use Adam(0.5, 0.9). Official
    presets keep taming's settings (batch 3 per process at 256 px, lr = 4.5e-6 x batch, which taming also
    multiplies by the number of GPUs: pass --lr-g/--lr-d for that; the preset's disc_start and
    disc_weight); the small presets use lr 2e-4, batch 16 and the discriminator from step 500.
    `disc_start` overrides the step at which the adversarial terms start.
    """
    from dataclasses import replace

    from models.gan.vqgan.config import PRESETS
    from models.gan.vqgan.discriminator import PatchDiscriminator
    from utils.gan.recipe import GANRecipe, StepContext
    from utils.errors import UserError

    from models.gan.vqgan.spec import SPEC

    SPEC.check_preset(preset)
    if perceptual not in PERCEPTUAL_MODES:
        raise UserError(f"unknown perceptual mode '{perceptual}': use one of {', '.join(PERCEPTUAL_MODES)}")
    config = PRESETS[preset]
    small = preset == "tiny"
    start = disc_start if disc_start is not None else (500 if small else config.loss.disc_start)
    loss_cfg = replace(config.loss, disc_start=start)
    batch_size = 16 if small else 3  # configs/imagenet_vqgan.yaml: 3 images per GPU
    lr = SMALL_LR if small else 4.5e-6 * batch_size
    model = VQGAN(config)
    disc = PatchDiscriminator(loss_cfg.disc_in_channels, loss_cfg.disc_ndf, loss_cfg.disc_num_layers)
    state: dict[str, Any] = {}  # the perceptual module (built on first use) and the fixed images of the grids

    def make_dataset(name: str):
        from utils.data.datasets import get_dataset

        data = get_dataset(name, size=config.resolution)
        shown = get_dataset(name, size=config.resolution, split="test") if name == "digits" else data
        state["shown"] = torch.stack([shown[i]["image"] for i in range(min(8, len(shown)))])
        return data

    def train_step(ctx: StepContext) -> dict[str, float]:
        from utils.gan.trainer import match_channels

        if "perceptual" not in state:
            state["perceptual"], state["perceptual_note"] = _build_perceptual(perceptual, ctx.device)
        net = state["perceptual"]
        cfg = loss_cfg if net is not None else replace(loss_cfg, perceptual_weight=0.0)
        G, D, acc = ctx.G, ctx.D, ctx.accelerator
        x = match_channels(ctx.next_batch()["image"], config.in_channels)
        # autoencoder: D frozen (its BN statistics still move, as in taming)
        D.requires_grad_(False)
        with acc.autocast():
            xrec, codebook_loss, _ = G(x)
            loss_ae, logs = autoencoder_loss(ctx.unwrap(G), D, net, x, xrec.float(), codebook_loss.float(),
                                             ctx.step, cfg)
        ctx.opt_g.zero_grad(set_to_none=True)
        acc.backward(loss_ae)
        ctx.opt_g.step()
        D.requires_grad_(True)
        with acc.autocast():
            logs.update(discriminator_step(D, x, xrec.detach().float(), ctx.opt_d, ctx.step, cfg, acc.backward))
        logs["ae/perceptual_weight"] = cfg.perceptual_weight
        return {"loss_g": logs["ae/total"], "loss_d": logs["d/loss"], **logs}

    def sampler(net: torch.nn.Module) -> torch.Tensor:
        """Rows of 8: fixed images, their reconstructions (twice over for a 4-row grid)."""
        from utils.gan.trainer import match_channels

        p = next(net.parameters())
        x = match_channels(state["shown"], config.in_channels).to(p.device, p.dtype)
        rec = net(x)[0].clamp(-1, 1)
        return torch.cat([x, rec])

    return GANRecipe(model, disc, config, loss="hinge", lr_g=lr, lr_d=lr, betas=(0.5, 0.9), n_critic=1,
                     ema_beta=0.0, batch_size=batch_size, steps=3000 if small else 500_000,
                     train_step=train_step, make_dataset=make_dataset, sampler=sampler)

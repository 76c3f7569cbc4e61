"""CycleGAN training (Zhu et al. 2017) as a train_gan.py step hook.

The recipe of the paper and of the original code: LSGAN loss, cycle-consistency weight
lambda = 10 for both directions, identity loss 0.5 * lambda, discriminators trained on a pool of
the last 50 generated images with their loss halved, Adam(lr 2e-4, betas 0.5, 0.999), batch 1,
100 epochs at a constant learning rate then 100 epochs of linear decay to 0.
Here epochs become steps: --steps and --lr-decay-start (train_gan's linear decay).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from models.gan.cyclegan.config import PRESETS
from models.gan.cyclegan.model import CycleDiscriminators, CycleGenerators
from utils.gan.recipe import GANRecipe, StepContext

LAMBDA_CYCLE = 10.0
"""lambda_A = lambda_B of the original."""
LAMBDA_IDENTITY = 0.5
"""The identity loss weight, relative to LAMBDA_CYCLE."""
POOL_SIZE = 50


def recipe(preset: str = "digits", lambda_cycle: float = LAMBDA_CYCLE, lambda_identity: float = LAMBDA_IDENTITY,
           pool_size: int = POOL_SIZE) -> GANRecipe:
    config = PRESETS[preset]
    shown: dict[str, torch.Tensor] = {}  # a few fixed A and B images for the sample grids

    def make_dataset(name: str):
        from models.gan.cyclegan.data import unpaired_dataset

        data = unpaired_dataset(name, config.image_size, "train")
        test = unpaired_dataset(name, config.image_size, "test", augment=False) if name in ("digits", "digits-ink") \
            else data
        items = [test[i] for i in range(min(4, len(test)))]
        shown["a"] = torch.stack([it["image"] for it in items])
        shown["b"] = torch.stack([it["image_b"] for it in items])
        return data

    def train_step(ctx: StepContext) -> dict[str, float]:
        from utils.gan import get_loss
        from utils.gan.trainer import match_channels

        loss = get_loss(ctx.settings.loss)
        # the original's LSGAN generator term is MSE(D(fake), 1), twice the toolkit's 0.5-weighted form
        g_scale = 2.0 if loss.name == "lsgan" else 1.0
        G, D, acc, gen = ctx.G, ctx.D, ctx.accelerator, ctx.generator
        pools = ctx.unwrap(D)
        batch = ctx.next_batch()
        real_a = match_channels(batch["image"], config.in_channels)
        real_b = match_channels(batch["image_b"], config.out_channels)

        # generators: adversarial + cycle + identity, with the discriminators frozen
        D.requires_grad_(False)
        with acc.autocast():
            out = G(real_a, real_b, identity=lambda_identity > 0)
            pred_b, pred_a = D(out["fake_b"], out["fake_a"])
            loss_gan = g_scale * (loss.g_loss(pred_b.float()) + loss.g_loss(pred_a.float()))
            cycle = lambda_cycle * (F.l1_loss(out["rec_a"].float(), real_a) + F.l1_loss(out["rec_b"].float(), real_b))
            idt = torch.zeros(())
            if lambda_identity > 0:
                idt = lambda_cycle * lambda_identity * (F.l1_loss(out["idt_a"].float(), real_b)
                                                        + F.l1_loss(out["idt_b"].float(), real_a))
            loss_g = loss_gan + cycle + idt
        ctx.opt_g.zero_grad(set_to_none=True)
        acc.backward(loss_g)
        ctx.opt_g.step()
        D.requires_grad_(True)

        # discriminators: real vs fakes drawn through the image pools; real and fake go in one forward
        # (instance norm is per image, so batching them together changes nothing)
        fake_b = pools.pool_fake_b.query(out["fake_b"], gen)
        fake_a = pools.pool_fake_a.query(out["fake_a"], gen)
        n = real_a.shape[0]
        with acc.autocast():
            pred_b, pred_a = D(torch.cat([real_b, fake_b]), torch.cat([real_a, fake_a]))
            pred_b, pred_a = pred_b.float(), pred_a.float()
            # the toolkit's lsgan D loss is the original's 0.5 * (MSE(real, 1) + MSE(fake, 0))
            loss_d_a = loss.d_loss(pred_b[:n], pred_b[n:])
            loss_d_b = loss.d_loss(pred_a[:n], pred_a[n:])
            loss_d = loss_d_a + loss_d_b
        ctx.opt_d.zero_grad(set_to_none=True)
        acc.backward(loss_d)
        ctx.opt_d.step()
        return {"loss_d": loss_d.item(), "loss_d_a": loss_d_a.item(), "loss_d_b": loss_d_b.item(),
                "loss_g": loss_g.item(), "loss_gan": loss_gan.item(), "cycle": cycle.item(), "idt": idt.item()}

    def sampler(net: torch.nn.Module) -> torch.Tensor:
        """Rows: A images, their translations to B, B images, their translations to A."""
        device = next(net.parameters()).device
        a, b = shown["a"].to(device), shown["b"].to(device)
        return torch.cat([a, net.G_A(a), b, net.G_B(b)])

    small = preset in ("digits", "tiny")
    steps = 2000 if small else 200_000
    return GANRecipe(CycleGenerators(config), CycleDiscriminators(config, pool_size), config, loss="lsgan",
                     lr_g=2e-4, lr_d=2e-4, betas=(0.5, 0.999), n_critic=1, ema_beta=0.0,
                     batch_size=8 if small else 1, steps=steps, lr_decay_start=steps // 2,
                     train_step=train_step, make_dataset=make_dataset, sampler=sampler)

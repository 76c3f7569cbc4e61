"""Progressive GAN training: the growing schedule as a train_gan.py step hook.

The recipe of the paper (and of pytorch_GAN_zoo's standard PGAN configuration): WGAN-GP loss with
lambda = 10 and a drift term eps_drift * D(x)^2 (eps 0.001) that keeps the critic near 0, one critic
step per generator step, Adam(lr 1e-3, betas 0, 0.99), generator EMA 0.999, minibatch 16.
Each scale trains in two phases: a fade-in where alpha rises linearly from 0 to 1 (the new layers
blend in; real images are blended the same way between the new and the previous resolution), then
a stabilisation phase at alpha 1. Real images are average-pooled to the current resolution.

The schedule is a pure function of the step, so resume is exact; `--steps` rescales it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from models.gan.progressive_gan.config import PRESETS
from models.gan.progressive_gan.layers import downsample2x, upsample2x
from models.gan.progressive_gan.model import Discriminator, Generator
from utils.gan.recipe import GANRecipe, StepContext

DRIFT = 0.001
"""eps_drift of the paper (epsilonD of pytorch_GAN_zoo)."""


@dataclass(frozen=True)
class GrowthSchedule:
    stage_steps: tuple[int, ...]
    """Generator steps spent at each scale, fade-in included (maxIterAtScale)."""
    fade_steps: tuple[int, ...]
    """Steps of each scale's fade-in, alpha 0 -> 1 (0 for the first scale)."""

    @property
    def total(self) -> int:
        return sum(self.stage_steps)

    def scaled(self, steps: int) -> "GrowthSchedule":
        """The same proportions over `steps` steps (each scale keeps at least one step)."""
        if steps == self.total:
            return self
        f = steps / self.total
        stage = tuple(max(1, round(s * f)) for s in self.stage_steps)
        fade = tuple(min(st - 1 if i else 0, max(0, round(fd * f))) for i, (st, fd) in
                     enumerate(zip(stage, self.fade_steps)))
        return GrowthSchedule(stage, fade)

    def at(self, step: int) -> tuple[int, float]:
        """(depth, alpha) at a 0-based step; after the schedule, the last scale at alpha 1."""
        start = 0
        for depth, (n, fade) in enumerate(zip(self.stage_steps, self.fade_steps)):
            if step < start + n:
                into = step - start
                alpha = 1.0 if depth == 0 or fade == 0 or into >= fade else (into + 1) / (fade + 1)
                return depth, alpha
            start += n
        return len(self.stage_steps) - 1, 1.0


# pytorch_GAN_zoo's standard configuration: maxIterAtScale, and fades of alphaNJumps x alphaSizeJumps iterations
OFFICIAL_SCHEDULE = GrowthSchedule((48000,) + (96000,) * 7 + (200000,), (0,) + (600 * 32,) * 5 + (1200 * 32,) * 3)


def schedule_for(preset: str) -> GrowthSchedule:
    n = PRESETS[preset].num_scales
    if preset.startswith("celebahq"):
        return GrowthSchedule(OFFICIAL_SCHEDULE.stage_steps[:n], OFFICIAL_SCHEDULE.fade_steps[:n])
    if preset == "digits-32":
        return GrowthSchedule((400, 800, 800, 1000), (0, 400, 400, 400))
    return GrowthSchedule((6,) * n, (0,) + (3,) * (n - 1))


def real_at(x: torch.Tensor, depth: int, alpha: float, num_scales: int) -> torch.Tensor:
    """Full-size real images brought to scale `depth`, blended like the generator during a fade-in."""
    for _ in range(num_scales - 1 - depth):
        x = downsample2x(x)
    if depth > 0 and alpha < 1:
        x = alpha * x + (1 - alpha) * upsample2x(downsample2x(x))
    return x


def recipe(preset: str = "digits-32") -> GANRecipe:
    config = PRESETS[preset]
    schedule = schedule_for(preset)
    state = {"depth": 0, "alpha": 1.0}  # shared with the sampler: the stage of the latest step
    fixed_z = torch.randn(64, config.latent_dim, generator=torch.Generator().manual_seed(12345))

    def train_step(ctx: StepContext) -> dict[str, float]:
        from utils.gan import get_loss, gradient_penalty
        from utils.gan.trainer import match_channels

        s = ctx.settings
        depth, alpha = schedule.scaled(s.steps).at(ctx.step)
        state.update(depth=depth, alpha=alpha)
        loss = get_loss(s.loss)
        G, D, acc, gen = ctx.G, ctx.D, ctx.accelerator, ctx.generator
        stage = {"depth": depth, "alpha": alpha}

        real = real_at(match_channels(ctx.next_batch()["image"], config.channels), depth, alpha, config.num_scales)
        z = torch.randn(real.shape[0], config.latent_dim, generator=gen).to(ctx.device)
        with acc.autocast():
            with torch.no_grad():
                fake = G(z, None, **stage)
            d_real = D(real, None, **stage).float()
            d_fake = D(fake, None, **stage).float()
            loss_d = loss.d_loss(d_real, d_fake)
            drift = d_real.pow(2).mean()
            total = loss_d + DRIFT * drift
            log = {"loss_d": loss_d.item(), "drift": drift.item()}
            if s.gp_weight > 0:
                gp = gradient_penalty(lambda x: D(x, None, **stage), real, fake, generator=gen)
                total = total + s.gp_weight * gp
                log["gp"] = gp.item()
        ctx.opt_d.zero_grad(set_to_none=True)
        acc.backward(total)
        ctx.opt_d.step()

        z = torch.randn(real.shape[0], config.latent_dim, generator=gen).to(ctx.device)
        with acc.autocast():
            loss_g = loss.g_loss(D(G(z, None, **stage), None, **stage).float())
        ctx.opt_g.zero_grad(set_to_none=True)
        acc.backward(loss_g)
        ctx.opt_g.step()
        return {**log, "loss_g": loss_g.item(), "depth": float(depth), "alpha": alpha}

    def sampler(net: torch.nn.Module) -> torch.Tensor:
        images = net(fixed_z.to(next(net.parameters()).device), None, **state)
        # shown at the final size so grids of every stage line up
        return torch.nn.functional.interpolate(images, size=config.image_size, mode="nearest")

    small = preset in ("digits-32", "tiny")
    return GANRecipe(Generator(config), Discriminator(config), config, loss="wasserstein", lr_g=1e-3, lr_d=1e-3,
                     betas=(0.0, 0.99), gp_weight=10.0, n_critic=1, ema_beta=0.999,
                     batch_size=32 if small else 16, steps=schedule.total, train_step=train_step, sampler=sampler)

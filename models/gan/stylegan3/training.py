"""StyleGAN3 / StyleGAN2 training (NVlabs' StyleGAN2Loss and training loop) as a train_gan.py step hook.

    python train/train_gan.py --model stylegan3 --preset tiny --data digits --kimg 8          # CPU, minutes
    python train/train_gan.py --model stylegan3 --cfg stylegan3-r --preset tiny --data digits --aug ada
    python train/train_gan.py --model stylegan3 --preset stylegan3-t-afhqv2-512 --data ~/afhqv2 \
        --batch 32 --gamma 8.2 --mirror --aug ada --target 0.6 --kimg 25000

One step is one minibatch of `batch` images through NVlabs' phases, in their order:

- Gmain: non-saturating logistic loss softplus(-D(G(z))), z with style mixing (StyleGAN2: p = 0.9);
- Greg (StyleGAN2, every 4th step): path length regularisation, weight 2, on half the batch;
- Dmain: softplus(D(G(z))) + softplus(-D(x)); G's w_avg and StyleGAN3's magnitude EMAs are updated here;
- Dreg (every 16th step): lazy R1, gamma / 2 * |grad_x D(x)|^2 * 16;
- G_ema: half-life of batch * 10 / 32 thousand images, ramped up over the first 5% of images seen;
- ADA (--aug ada): every 4 steps p moves by sign(E[sign(D(x))] - target) * 4 batch / 500k.

Each optimiser steps once per phase (a lazy phase is its own step), with Adam's lr and betas rescaled by
interval / (interval + 1). StyleGAN3-R blurs D's inputs with a Gaussian of sigma 10 fading out over the
first 200k * batch / 32 images. Every random number comes from the step's generator and the running
state (path length mean, ADA p and statistics) lives in the discriminator wrapper's buffers, so a
resumed run repeats the uninterrupted one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from models.gan.stylegan3.config import PRESETS, StyleGANConfig, for_architecture
from models.gan.stylegan3.model import StyleGANDiscriminator, StyleGANGenerator
from utils.errors import UserError
from utils.gan.ada import AugmentPipe
from utils.gan.recipe import GANRecipe, StepContext

__all__ = ["StyleGANCritic", "TrainingNumbers", "PAPER", "recipe", "config_for"]


@dataclass(frozen=True)
class TrainingNumbers:
    """The hyperparameters of one NVlabs training run (train.py and docs/configs.md)."""

    gamma: float
    """R1 weight (--gamma)."""
    batch: int = 32
    """Images per step (--batch)."""
    kimg: int = 25000
    """Length of the run in thousands of images (--kimg)."""
    mirror: bool = True
    """x-flips of the dataset (--mirror)."""
    aug: str = "ada"
    """'ada' or 'noaug' (--aug)."""
    glr: float | None = None
    """G learning rate; None: 0.0025 for StyleGAN3, 0.002 for StyleGAN2."""
    dlr: float = 0.002
    """D learning rate."""


# docs/configs.md, "Configurations used in StyleGAN3 paper" (MetFaces were fine-tuned from the FFHQ networks there)
PAPER: dict[str, TrainingNumbers] = {
    "stylegan3-t-ffhq-1024": TrainingNumbers(32.8, aug="noaug"),
    "stylegan3-r-ffhq-1024": TrainingNumbers(32.8, aug="noaug"),
    "stylegan3-t-ffhqu-1024": TrainingNumbers(32.8, aug="noaug"),
    "stylegan3-r-ffhqu-1024": TrainingNumbers(32.8, aug="noaug"),
    "stylegan3-t-metfaces-1024": TrainingNumbers(6.6, kimg=5000),
    "stylegan3-r-metfaces-1024": TrainingNumbers(3.3, kimg=5000),
    "stylegan3-t-metfacesu-1024": TrainingNumbers(16.4, kimg=5000),
    "stylegan3-r-metfacesu-1024": TrainingNumbers(6.6, kimg=5000),
    "stylegan3-t-afhqv2-512": TrainingNumbers(8.2),
    "stylegan3-r-afhqv2-512": TrainingNumbers(16.4),
    "stylegan3-t-ffhqu-256": TrainingNumbers(1.0, batch=64, aug="noaug", dlr=0.0025),
    "stylegan3-r-ffhqu-256": TrainingNumbers(1.0, batch=64, aug="noaug", dlr=0.0025),
    "stylegan2-ffhq-1024": TrainingNumbers(10.0, aug="noaug"),
    "stylegan2-ffhqu-1024": TrainingNumbers(10.0, aug="noaug"),
    "stylegan2-metfaces-1024": TrainingNumbers(5.0, kimg=5000),
    "stylegan2-metfacesu-1024": TrainingNumbers(10.0, kimg=5000),
    "stylegan2-afhqv2-512": TrainingNumbers(5.0),
    "stylegan2-ffhqu-256": TrainingNumbers(1.0, batch=64, aug="noaug", glr=0.0025, dlr=0.0025),
}
SMALL = TrainingNumbers(gamma=0.05, batch=16, kimg=8, mirror=False, aug="ada", dlr=0.002)
"""The small presets on digits (32 px): R1 scaled down with the resolution, short runs."""

STYLE_MIXING = 0.9
PL_WEIGHT = 2.0
PL_DECAY = 0.01
PL_BATCH_SHRINK = 2
G_REG_INTERVAL = 4
D_REG_INTERVAL = 16
ADA_INTERVAL = 4
ADA_KIMG = 500
EMA_RAMPUP = 0.05
BETAS = (0.0, 0.99)


def config_for(preset: str, cfg: str | None = None) -> StyleGANConfig:
    """The preset's config, retargeted to another architecture by `cfg` (the small presets have one of each)."""
    config = PRESETS[preset]
    if not cfg or cfg == config.architecture:
        return config
    if cfg not in ("stylegan3-t", "stylegan3-r", "stylegan2"):
        raise UserError(f"--cfg must be stylegan3-t, stylegan3-r or stylegan2, got '{cfg}'")
    if preset.startswith("tiny"):
        return PRESETS[{"stylegan3-t": "tiny", "stylegan3-r": "tiny-r", "stylegan2": "tiny-stylegan2"}[cfg]]
    return for_architecture(config, cfg)


class StyleGANCritic(nn.Module):
    """What D sees in training: StyleGAN3-R's fading blur, then ADA, then the discriminator `D`. It also keeps
    the running state of the recipe (the path length mean, ADA's p and statistics) in buffers."""

    def __init__(self, config: StyleGANConfig, augment: AugmentPipe):
        super().__init__()
        self.D = StyleGANDiscriminator(config)
        self.augment = augment
        self.register_buffer("pl_mean", torch.zeros([]))

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None, blur_sigma: float = 0.0,
                generator: torch.Generator | None = None, augment: bool = False) -> torch.Tensor:
        from utils.gan.regularizers import gaussian_blur

        if blur_sigma > 0:
            images = gaussian_blur(images, blur_sigma)
        if augment:
            images = self.augment(images, generator)
        return self.D(images, labels)


def _set_adam(opt, lr: float, betas: tuple[float, float], interval: int | None) -> None:
    from utils.gan.regularizers import lazy_adam_hparams

    lr, betas = lazy_adam_hparams(lr, betas, interval)
    for group in opt.param_groups:
        group["lr"], group["betas"] = lr, betas


def recipe(preset: str = "tiny", cfg: str | None = None, style_mixing: float | None = None,
           pl_weight: float | None = None) -> GANRecipe:
    """The NVlabs recipe of `preset` (`cfg`: train another of the three configs at the preset's size)."""
    from models.gan.stylegan3.spec import SPEC

    SPEC.check_preset(preset)
    config = config_for(preset, cfg)
    sg2 = not config.is_stylegan3
    numbers = PAPER.get(preset, SMALL)
    if config.is_stylegan3:
        config = replace(config, magnitude_ema_beta=0.5 ** (numbers.batch / 20000))
    mixing = (STYLE_MIXING if sg2 else 0.0) if style_mixing is None else style_mixing
    pl = (PL_WEIGHT if sg2 else 0.0) if pl_weight is None else pl_weight
    blur_init = 10.0 if config.architecture == "stylegan3-r" else 0.0
    G = StyleGANGenerator(config)
    D = StyleGANCritic(config, AugmentPipe.bgc())  # used when the run's augment is 'ada' (the paper's --aug ada)
    g_interval = G_REG_INTERVAL if pl > 0 else None

    def train_step(ctx: StepContext) -> dict[str, float]:
        from utils.gan.regularizers import fading_blur_sigma, lazy_r1, mixing_cutoff, path_length_penalty
        from utils.gan.trainer import match_channels

        s, acc, gen, dev = ctx.settings, ctx.accelerator, ctx.generator, ctx.device
        G_, D_ = ctx.G, ctx.D
        critic = ctx.unwrap(D_)
        if s.augment not in ("ada", ""):
            raise UserError(f"stylegan3 trains with --aug ada or --aug noaug (ADA's pipeline), not '{s.augment}'")
        augment = critic.augment if s.augment == "ada" else None
        d_interval = D_REG_INTERVAL if s.r1_weight > 0 else None
        _set_adam(ctx.opt_g, s.lr_g, s.betas, g_interval)
        _set_adam(ctx.opt_d, s.lr_d, s.betas, d_interval)
        batch = ctx.next_batch()
        real = match_channels(batch["image"], config.channels).to(dev)
        n = real.shape[0]
        real_c = batch["label"].to(dev) if config.num_classes and batch.get("label") is not None else None
        seen = ctx.step * n * acc.num_processes
        sigma = fading_blur_sigma(seen, blur_init, n * 200 / 32)
        k = config.num_classes

        def fake_labels() -> torch.Tensor | None:
            return torch.randint(0, k, (n,), generator=gen).to(dev) if k else None

        def latents(m: int = n) -> torch.Tensor:
            return torch.randn(m, config.z_dim, generator=gen).to(dev)

        def run_G(z: torch.Tensor, c: torch.Tensor | None, update_emas: bool = False):
            cutoff = mixing_cutoff(config.num_ws, mixing, gen) if mixing > 0 else None
            mix = latents(z.shape[0]) if cutoff is not None and cutoff < config.num_ws else None
            return G_(z, c, noise_mode="random", noise_generator=gen, update_emas=update_emas, mix_z=mix,
                      mix_cutoff=cutoff, return_ws=True)

        def run_D(images: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
            return D_(images, c, blur_sigma=sigma, generator=gen, augment=augment is not None).float()

        log: dict[str, float] = {}
        # -- G: main loss, then the lazy path length step
        D_.requires_grad_(False)
        with acc.autocast():
            z, c = latents(), fake_labels()
            fake, _ = run_G(z, c)
            loss_g = F.softplus(-run_D(fake, c)).mean()
        ctx.opt_g.zero_grad(set_to_none=True)
        acc.backward(loss_g)
        ctx.opt_g.step()
        log["loss_g"] = loss_g.item()
        if g_interval and ctx.step % g_interval == 0:
            m = max(1, n // PL_BATCH_SHRINK)
            with acc.autocast():
                zp, cp = latents(m), (fake_labels()[:m] if k else None)
                images, ws = run_G(zp, cp)
                penalty, length, mean = path_length_penalty(images.float(), ws, critic.pl_mean, PL_DECAY, gen)
            critic.pl_mean.copy_(mean)
            ctx.opt_g.zero_grad(set_to_none=True)
            acc.backward(penalty.mean() * pl * g_interval)
            ctx.opt_g.step()
            log.update(pl_penalty=penalty.mean().item(), pl_length=length.item())
        D_.requires_grad_(True)

        # -- D: main loss (G's running means move here), then the lazy R1 step
        G_.requires_grad_(False)
        with acc.autocast():
            z, c = latents(), fake_labels()
            with torch.no_grad():
                fake, _ = run_G(z, c, update_emas=True)
            d_fake = run_D(fake, c)
            d_real = run_D(real, real_c)
            loss_d = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
        ctx.opt_d.zero_grad(set_to_none=True)
        acc.backward(loss_d)
        ctx.opt_d.step()
        if augment is not None:
            augment.accumulate(d_real)
        log.update(loss_d=loss_d.item(), d_real=d_real.mean().item(), d_fake=d_fake.mean().item())
        if d_interval and ctx.step % d_interval == 0:
            real_in = real.detach().requires_grad_(True)
            with acc.autocast():
                logits = run_D(real_in, real_c)
                r1 = lazy_r1(real_in, logits, s.r1_weight, d_interval)
            ctx.opt_d.zero_grad(set_to_none=True)
            acc.backward(r1)
            ctx.opt_d.step()
            if augment is not None:
                augment.accumulate(logits)
            log["r1"] = r1.item() / (s.r1_weight / 2 * d_interval)
        G_.requires_grad_(True)

        # -- ADA's p, from the signs of the last ADA_INTERVAL steps
        if augment is not None:
            if (ctx.step + 1) % ADA_INTERVAL == 0:
                r_t = augment.adjust(s.ada_target, n * acc.num_processes * ADA_INTERVAL, ADA_KIMG)
                if r_t is not None:
                    log["ada_rt"] = r_t
            log["ada_p"] = float(augment.p)
        if sigma > 0:
            log["blur_sigma"] = sigma
        return log

    def ema_schedule(step: int, settings) -> float:
        from utils.gan.ema import stylegan_ema_beta

        b = settings.batch_size
        return stylegan_ema_beta(step * b, b, ema_kimg=b * 10 / 32, rampup=EMA_RAMPUP)

    glr = numbers.glr if numbers.glr is not None else (0.002 if sg2 else 0.0025)
    steps = math.ceil(numbers.kimg * 1000 / numbers.batch)
    return GANRecipe(G, D, config, loss="non_saturating", lr_g=glr, lr_d=numbers.dlr, betas=BETAS, n_critic=1,
                     r1_weight=numbers.gamma, ema_beta=0.999, augment="ada" if numbers.aug == "ada" else "",
                     batch_size=numbers.batch, steps=steps, train_step=train_step, ema_schedule=ema_schedule)

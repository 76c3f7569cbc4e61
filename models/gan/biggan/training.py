"""BigGAN-deep training (Brock, Donahue & Simonyan 2018) as a train_gan.py step hook.

The paper's recipe: hinge loss; spectral norm in G and D (built into the layers of this package);
orthogonal initialisation; Adam with betas (0, 0.999); two D steps per G step; orthogonal
regularisation of G's weights with beta = 1e-4; fake labels drawn uniformly over the classes and
fed to G's shared embedding and D's projection; an EMA of G (decay 0.9999) that is the exported
generator; batch 2048; standing batch-norm statistics for sampling.

    python train/train_gan.py --model biggan --preset tiny --dataset digits
    python train/train_gan.py --model biggan --preset biggan-deep-128 --dataset path/to/imagenet/train
"""
from __future__ import annotations

import torch
from torch import nn

from models.gan.biggan.config import PRESETS, BigGANDiscriminatorConfig
from models.gan.biggan.discriminator import BigGANDiscriminator, ortho_params, orthogonal_regularization
from models.gan.biggan.generator import BigGANGenerator
from models.gan.biggan.layers import BatchNorm, ConditionalBatchNorm
from utils.gan.recipe import GANRecipe, StepContext
from utils.errors import UserError

ORTHO_BETA = 1e-4
"""Strength of the orthogonal regulariser on G (paper, section 3.1)."""
EMA_BETA = 0.9999
N_CRITIC = 2
BETAS = (0.0, 0.999)
PAPER_LR: dict[str, tuple[float, float]] = {
    # (G, D), BigGAN-deep, paper appendix C
    "biggan-deep-128": (5e-5, 2e-4),
    "biggan-deep-256": (2.5e-5, 2.5e-5),
    "biggan-deep-512": (2.5e-5, 2.5e-5),
}
SMALL_LR = (1e-4, 4e-4)
"""The SAGAN/BigGAN baseline TTUR (G 1e-4, D 4e-4), used for the small presets."""
PAPER_BATCH = 2048


def orthogonal_init(module: nn.Module) -> nn.Module:
    """Orthogonal initialisation of every conv, linear and embedding weight (the paper's G and D init)."""
    for m in module.modules():
        w = getattr(m, "weight", None)
        if isinstance(w, nn.Parameter) and w.ndim >= 2 and isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            nn.init.orthogonal_(w)
    return module


@torch.no_grad()
def standing_stats(generator: BigGANGenerator, batch_size: int = 64, accumulations: int = 1, points: int | None = None,
                   seed: int = 0) -> BigGANGenerator:
    """Fill the per-truncation batch-norm tables ("standing statistics") of `generator`.

    For each of the `n_stats` truncation values t = 0, 1/(n-1), ..., 1, noise truncated to [-2, 2]
    and scaled by t goes through G with its norms in batch-statistics mode, and each norm's input
    mean and variance (averaged over `accumulations` batches) are stored in the table entry of t.
    With `points` < n_stats, only that many evenly spaced entries are measured and the rest are
    linearly interpolated (the statistics vary smoothly with t). The spectral-norm vectors are left
    as they are. Training never fills these tables (it uses batch statistics), so eval-mode sampling
    needs this after training.
    """
    from models.gan.biggan.pipeline import truncated_noise

    c = generator.config
    p = next(generator.parameters())
    norms = [m for m in generator.modules() if isinstance(m, (ConditionalBatchNorm, BatchNorm))]
    seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(mod: nn.Module, args: tuple) -> None:
        var, mean = torch.var_mean(args[0].float(), dim=(0, 2, 3), correction=0)
        seen[mod] = (mean, var)

    last = c.n_stats - 1
    points = c.n_stats if points is None else max(2, min(points, c.n_stats))
    measured = sorted({round(j * last / (points - 1)) for j in range(points)})
    hooks = [m.register_forward_pre_hook(record) for m in norms]
    modes = [m.training for m in norms]
    gen = torch.Generator().manual_seed(seed)
    table: dict[nn.Module, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {m: {} for m in norms}
    try:
        for m in norms:
            m.train()
        for i in measured:
            t = i / last
            for a in range(accumulations):
                z = truncated_noise((batch_size, c.z_dim), t, gen) if t > 0 else torch.zeros(batch_size, c.z_dim)
                y = torch.randint(0, c.num_classes, (batch_size,), generator=gen)
                generator(z.to(p.device, p.dtype), y.to(p.device), 1.0)  # the norms ignore truncation here
                for m in norms:
                    mean, var = seen[m]
                    if a:
                        mean, var = table[m][i][0] + mean, table[m][i][1] + var
                    table[m][i] = (mean, var)
        for m in norms:
            for i in range(c.n_stats):
                lo = max(j for j in measured if j <= i)
                hi = min(j for j in measured if j >= i)
                w = 0.0 if hi == lo else (i - lo) / (hi - lo)
                mean = torch.lerp(table[m][lo][0], table[m][hi][0], w) / accumulations
                var = torch.lerp(table[m][lo][1], table[m][hi][1], w) / accumulations
                m.running_means[i] = mean.to(m.running_means.dtype)
                m.running_vars[i] = var.to(m.running_vars.dtype)
    finally:
        for h in hooks:
            h.remove()
        for m, mode in zip(norms, modes):
            m.train(mode)
    return generator


def recipe(preset: str = "tiny", ortho_beta: float = ORTHO_BETA) -> GANRecipe:
    """BigGAN-deep's recipe for `preset`; the small presets keep everything but the scale (batch 64,
    the baseline TTUR learning rates, a shorter run)."""
    from models.gan.biggan.spec import SPEC

    SPEC.check_preset(preset)
    config = PRESETS[preset]
    G = orthogonal_init(BigGANGenerator(config))
    D = orthogonal_init(BigGANDiscriminator(BigGANDiscriminatorConfig.mirror(config)))
    small = preset not in PAPER_LR
    lr_g, lr_d = SMALL_LR if small else PAPER_LR[preset]
    n_show = 80  # train_gan's grid: 8 rows of 10 classes

    def make_dataset(name: str):
        if name == "digits":
            from utils.data.digits import DigitsDataset

            data = DigitsDataset(size=config.resolution, split="train")
        else:
            from utils.data.datasets import get_dataset

            data = get_dataset(name, size=config.resolution, class_labels=True)
        k = getattr(data, "num_classes", 0) or 0
        if k > config.num_classes:
            raise UserError(f"{name} has {k} classes but biggan preset '{preset}' has {config.num_classes}: "
                            "use a preset with enough classes, or fewer class subfolders")
        return data

    def train_step(ctx: StepContext) -> dict[str, float]:
        from utils.gan import get_loss
        from utils.gan.trainer import match_channels

        loss = get_loss(ctx.settings.loss)
        G, D, acc, gen, dev = ctx.G, ctx.D, ctx.accelerator, ctx.generator, ctx.device
        k, zd = config.num_classes, config.z_dim
        d_losses, d_real, d_fake = [], [], []
        for _ in range(ctx.settings.n_critic):
            batch = ctx.next_batch()
            real = match_channels(batch["image"], 3)
            n = real.shape[0]
            z = torch.randn((n, zd), generator=gen).to(dev)
            y_fake = torch.randint(0, k, (n,), generator=gen).to(dev)
            with acc.autocast():
                with torch.no_grad():
                    fake = G(z, y_fake)
                # D has no batch norm: real and fake in one forward is the same as two (and DDP-safe)
                logits = D(torch.cat([real, fake]), torch.cat([batch["label"].long(), y_fake])).float()
                loss_d = loss.d_loss(logits[:n], logits[n:])
            ctx.opt_d.zero_grad(set_to_none=True)
            acc.backward(loss_d)
            ctx.opt_d.step()
            d_losses.append(loss_d.item())
            d_real.append(logits[:n].mean().item())
            d_fake.append(logits[n:].mean().item())

        D.requires_grad_(False)
        z = torch.randn((n, zd), generator=gen).to(dev)
        y = torch.randint(0, k, (n,), generator=gen).to(dev)
        with acc.autocast():
            loss_g = loss.g_loss(D(G(z, y), y).float())
        ortho = (orthogonal_regularization(ortho_params(ctx.unwrap(G)), ortho_beta) if ortho_beta > 0
                 else torch.zeros(()))
        ctx.opt_g.zero_grad(set_to_none=True)
        acc.backward(loss_g + ortho.to(loss_g.device))
        ctx.opt_g.step()
        D.requires_grad_(True)
        return {"loss_d": sum(d_losses) / len(d_losses), "loss_g": loss_g.item(), "ortho": ortho.item(),
                "d_real": sum(d_real) / len(d_real), "d_fake": sum(d_fake) / len(d_fake)}

    def sampler(net: nn.Module) -> torch.Tensor:
        """Standing statistics into the (EMA) generator, then a grid at truncation 1: each column one class.
        train_gan samples right before it exports, so the exported generator carries the statistics."""
        p = next(net.parameters())
        standing_stats(net, batch_size=64 if small else 256, points=11 if small else None)
        g = torch.Generator().manual_seed(0)
        z = torch.randn((n_show, config.z_dim), generator=g).to(p.device, p.dtype)
        y = (torch.arange(n_show) % config.num_classes).to(p.device)
        return net(z, y, 1.0)

    return GANRecipe(G, D, config, loss="hinge", lr_g=lr_g, lr_d=lr_d, betas=BETAS, n_critic=N_CRITIC,
                     ema_beta=EMA_BETA, batch_size=64 if small else PAPER_BATCH, steps=2000 if small else 250_000,
                     train_step=train_step, make_dataset=make_dataset, sampler=sampler)

"""StyleGAN2's regularisers (Karras et al. 2020, sections 3.1-3.2) and the training-time helpers around them.

- Lazy regularisation: a regulariser evaluated every `interval` minibatches only, scaled by `interval`
  so its expected contribution is unchanged; Adam's learning rate and betas are rescaled by
  interval / (interval + 1) to account for the extra optimiser steps (`lazy_adam_hparams`).
- R1 (utils.gan.penalties.r1_penalty) with weight gamma / 2: `lazy_r1`.
- Path length regularisation: for random image-space directions y ~ N(0, I) / sqrt(HW), the norm
  |J_w^T y| of the generator's Jacobian should be the same for every w; its running mean `a` follows
  an EMA (decay 0.01) and the penalty is (|J_w^T y| - a)^2 (`path_length_penalty`).
- Style mixing regularisation (StyleGAN, section 3.1): with probability p, the styles from a random
  cutoff on come from a second latent (`mixing_cutoff` draws it).
- The StyleGAN3-R blur: real and fake images seen by D are blurred by a Gaussian whose sigma fades
  linearly from `init_sigma` to 0 (`fading_blur_sigma`, `gaussian_blur`).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from utils.gan.penalties import r1_penalty
from utils.nn.stylegan.upfirdn2d import filter2d

Tensor = torch.Tensor

__all__ = ["lazy_ratio", "lazy_adam_hparams", "lazy_r1", "path_length_penalty", "mixing_cutoff",
           "fading_blur_sigma", "gaussian_blur"]


def lazy_ratio(interval: int | None) -> float:
    """interval / (interval + 1): the share of optimiser steps that are main steps (1 without lazy steps)."""
    return 1.0 if not interval else interval / (interval + 1)


def lazy_adam_hparams(lr: float, betas: Sequence[float], interval: int | None) -> tuple[float, tuple[float, float]]:
    """Adam's (lr, betas) for an optimiser that also takes a lazy regularisation step every `interval` steps."""
    r = lazy_ratio(interval)
    b1, b2 = betas
    return lr * r, (b1 ** r, b2 ** r)


def lazy_r1(real: Tensor, real_logits: Tensor, gamma: float, interval: int = 1) -> Tensor:
    """gamma / 2 * R1 * interval: the R1 loss of a lazy step (`real` must require grad)."""
    return r1_penalty(real, real_logits.float()) * (gamma / 2) * interval


def path_length_penalty(images: Tensor, ws: Tensor, pl_mean: Tensor, decay: float = 0.01,
                        generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(penalty per sample, its mean path length, the new running mean) for images made from ws (B, n, w_dim)
    with a graph to ws. The running mean is returned detached; store it back into `pl_mean`."""
    h, w = images.shape[2], images.shape[3]
    gdev = generator.device if generator is not None else "cpu"
    noise = torch.randn(images.shape, generator=generator, device=gdev).to(images) / math.sqrt(h * w)
    (grads,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    lengths = grads.square().sum(2).mean(1).sqrt()
    mean = pl_mean.to(lengths).lerp(lengths.mean(), decay)
    return (lengths - mean).square(), lengths.mean().detach(), mean.detach()


def mixing_cutoff(num_ws: int, prob: float, generator: torch.Generator | None = None) -> int:
    """The style index from which the second latent takes over: uniform in [1, num_ws) with probability
    `prob`, else num_ws (no mixing)."""
    if num_ws < 2:
        return num_ws
    cutoff = int(torch.randint(1, num_ws, (), generator=generator))
    return cutoff if float(torch.rand((), generator=generator)) < prob else num_ws


def fading_blur_sigma(images_seen: int, init_sigma: float, fade_kimg: float) -> float:
    """StyleGAN3-R's blur of D's inputs: init_sigma, fading linearly to 0 over fade_kimg thousand images."""
    if fade_kimg <= 0 or init_sigma <= 0:
        return 0.0
    return max(1 - images_seen / (fade_kimg * 1e3), 0.0) * init_sigma


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """A separable blur of width 3 sigma each side with weights 2^(-(x / sigma)^2), as the release's."""
    radius = math.floor(sigma * 3)
    if radius <= 0:
        return images
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float32)
    f = torch.exp2(-(x / sigma).square())
    return filter2d(images, f / f.sum())

"""VQGAN's training objective (taming's VQLPIPSWithDiscriminator) as plain functions."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def vanilla_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())


D_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "hinge": hinge_d_loss, "vanilla": vanilla_d_loss}


def adopt_weight(weight: float, global_step: int, threshold: int = 0, value: float = 0.0) -> float:
    """`weight` from step `threshold` on, `value` before (the discriminator's late start)."""
    return value if global_step < threshold else weight


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                    disc_weight: float = 1.0, max_weight: float = 1e4) -> torch.Tensor:
    """lambda = ||grad_L rec|| / (||grad_L g|| + 1e-4), clamped to [0, 1e4], times `disc_weight`.

    L is the decoder's last layer: the adversarial term is rescaled so that its gradient there
    is as large as the reconstruction's (Esser et al. 2021, eq. 7). The result carries no gradient.
    """
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    w = torch.linalg.vector_norm(rec_grad) / (torch.linalg.vector_norm(g_grad) + 1e-4)
    return torch.clamp(w, 0.0, max_weight).detach() * disc_weight


def reconstruction_loss(x: torch.Tensor, xrec: torch.Tensor,
                        perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
                        perceptual_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """mean |x - xrec| + perceptual_weight * mean LPIPS(x, xrec); returns (total, LPIPS part)."""
    l1 = (x - xrec).abs().mean()
    if perceptual is None or perceptual_weight == 0:
        return l1, torch.zeros((), device=x.device)
    p = perceptual(x.contiguous(), xrec.contiguous()).mean()
    return l1 + perceptual_weight * p, p

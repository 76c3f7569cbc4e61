"""VQGAN's training objective (taming's VQLPIPSWithDiscriminator) as plain functions.

The adversarial terms are the shared ones of `utils.gan.losses` (taming halves the D losses); what is
VQGAN's own is the late start of the discriminator, the adaptive weight and the L1 + LPIPS reconstruction.
"""
from __future__ import annotations

from typing import Callable

import torch

from utils.gan import losses as shared


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """taming's hinge D loss: half the shared hinge loss (the mean of its real and fake terms)."""
    return 0.5 * shared.hinge_d_loss(real_logits, fake_logits)


def vanilla_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """taming's 'vanilla' D loss: half the shared non-saturating loss."""
    return 0.5 * shared.non_saturating_d_loss(real_logits, fake_logits)


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

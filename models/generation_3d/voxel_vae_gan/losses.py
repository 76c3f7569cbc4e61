"""The 3D-VAE-GAN's losses: weighted voxel BCE, the VAE's KL term and its linear annealing."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["weighted_bce", "kl_divergence", "kl_weight"]


def weighted_bce(logits: Tensor, target: Tensor, pos_weight: float = 0.85) -> Tensor:
    """Mean over voxels of BCE with occupied voxels weighted `pos_weight` and empty ones 1 - pos_weight.

    Scaled by 2 so that pos_weight 0.5 is plain BCE. Most voxels are empty; weighting the occupied
    ones keeps the generator from predicting an empty grid (Brock et al. 2016 use the same idea).
    """
    weight = 2 * (pos_weight * target + (1 - pos_weight) * (1 - target))
    return (weight * F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")).mean()


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), averaged over the batch and the latent dimensions."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean()


def kl_weight(progress: float, start: float, end: float) -> float:
    """Linear annealing: `start` at progress 0 (the first step), `end` at progress 1 (the last)."""
    return start + (end - start) * min(max(progress, 0.0), 1.0)

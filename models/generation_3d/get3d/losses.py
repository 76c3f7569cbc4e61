"""GET3D's objective (nv-tlabs' training/loss.py), on the shared GAN losses and penalties (utils/gan):

- generator: non-saturating loss on the RGB logits + the same on the silhouette logits
  + 0.01 x the SDF sign regulariser over the grid's edges (utils/rendering/dmtet.py) averaged over
  the batch + the empty-shape regulariser (mean |sdf| of shapes with no surface);
- discriminator: non-saturating loss on real and fake logits of both branches, and on real images
  R1 with weight r1_gamma / 2 on the RGB logits' gradient and gamma_mask / 2 on the silhouette
  logits' gradient, both taken with respect to the whole real input (RGB + mask channels).
"""
from __future__ import annotations

from torch import Tensor

from utils.gan.losses import non_saturating_d_loss, non_saturating_g_loss
from utils.gan.penalties import r1_penalty
from utils.rendering.dmtet import sdf_sign_regularizer

__all__ = ["SDF_SIGN_WEIGHT", "discriminator_loss", "generator_loss", "r1_loss"]

SDF_SIGN_WEIGHT = 0.01
"""Weight of the SDF sign regulariser in the generator loss (GET3D's)."""


def generator_loss(fake_rgb: Tensor, fake_mask: Tensor, sdf: Tensor, edges: Tensor, sdf_reg: Tensor) -> Tensor:
    """`sdf` (B, N) or (B, N, 1) grid SDF values; `edges` (E, 2) grid edges; `sdf_reg` (B,) empty-shape term."""
    sign = sdf_sign_regularizer(sdf.reshape(sdf.shape[0], -1), edges)
    return (non_saturating_g_loss(fake_rgb) + non_saturating_g_loss(fake_mask) + SDF_SIGN_WEIGHT * sign
            + sdf_reg.mean())


def discriminator_loss(real_rgb: Tensor, real_mask: Tensor, fake_rgb: Tensor, fake_mask: Tensor) -> Tensor:
    """Non-saturating D loss of both branches."""
    return non_saturating_d_loss(real_rgb, fake_rgb) + non_saturating_d_loss(real_mask, fake_mask)


def r1_loss(real: Tensor, real_rgb: Tensor, real_mask: Tensor, r1_gamma: float, gamma_mask: float) -> Tensor:
    """R1 on the real input `real` (requires grad) for the RGB and silhouette logits."""
    return r1_penalty(real, real_rgb) * (r1_gamma / 2) + r1_penalty(real, real_mask) * (gamma_mask / 2)

"""GET3D's losses: the values of nv-tlabs' formulas (written out here from the paper's terms) on fixed
logits, the SDF sign term only on sign-changing edges, and R1 against a closed form."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from models.generation_3d.get3d.losses import (
    SDF_SIGN_WEIGHT,
    discriminator_loss,
    generator_loss,
    r1_loss,
)


def test_generator_and_discriminator_losses_on_fixed_logits():
    fr, fm = torch.tensor([[0.3], [-1.2]]), torch.tensor([[2.0], [0.1]])
    rr, rm = torch.tensor([[1.5], [0.4]]), torch.tensor([[-0.7], [0.9]])
    sdf = torch.tensor([[0.5, -0.25, 0.75], [-0.5, -0.1, -0.2]])
    edges = torch.tensor([[0, 1], [1, 2], [0, 2]])
    got = generator_loss(fr, fm, sdf, edges, torch.tensor([0.0, 0.3]))
    # sign-changing edges: (0.5, -0.25) and (-0.25, 0.75) of the first shape; BCE of each end towards the other's side
    a = torch.tensor([0.5, -0.25])
    b = torch.tensor([-0.25, 0.75])
    sign = (F.binary_cross_entropy_with_logits(a, (b > 0).float())
            + F.binary_cross_entropy_with_logits(b, (a > 0).float()))
    want = F.softplus(-fr).mean() + F.softplus(-fm).mean() + SDF_SIGN_WEIGHT * sign + 0.15
    assert torch.allclose(got, want)
    d = discriminator_loss(rr, rm, fr, fm)
    assert torch.allclose(d, F.softplus(-rr).mean() + F.softplus(fr).mean() + F.softplus(-rm).mean()
                          + F.softplus(fm).mean())


def test_r1_matches_its_closed_form_on_a_linear_critic():
    real = torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(0), requires_grad=True)
    w_rgb, w_mask = torch.randn(4, 2, 2), torch.randn(4, 2, 2)
    rgb = (real * w_rgb).flatten(1).sum(1, keepdim=True)
    mask = (real * w_mask).flatten(1).sum(1, keepdim=True)
    got = r1_loss(real, rgb, mask, r1_gamma=40.0, gamma_mask=10.0)
    assert torch.allclose(got, 20.0 * w_rgb.square().sum() + 5.0 * w_mask.square().sum())

"""The GAN toolkit against hand computations."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from utils.gan import EMA, AdaptiveAugment, diff_augment, get_loss, gradient_penalty, r1_penalty
from utils.gan.spectral import apply_spectral_norm
from utils.errors import UserError


def test_gradient_penalty_of_a_linear_critic():
    # D(x) = <w, x>: the gradient is w everywhere, so GP = (||w|| - 1)^2 exactly
    w = torch.tensor([3.0, 4.0, 0.0, 0.0]).view(1, 1, 2, 2)
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx((5.0 - 1.0) ** 2)


def test_r1_of_a_quadratic_critic():
    # D(x) = sum x^2 / 2: grad = x, so R1 = mean ||x||^2
    x = torch.randn(4, 3, requires_grad=True)
    logits = (x ** 2).sum(1) / 2
    assert r1_penalty(x, logits).item() == pytest.approx(x.detach().pow(2).sum(1).mean().item(), rel=1e-6)


def test_losses_on_known_logits():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    ns = get_loss("non_saturating")
    expected = (-F.logsigmoid(real)).mean() + (-F.logsigmoid(-fake)).mean()
    assert ns.d_loss(real, fake).item() == pytest.approx(expected.item(), rel=1e-6)
    assert ns.d_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(2 * math.log(2), rel=1e-6)
    assert get_loss("hinge").d_loss(real, fake).item() == pytest.approx((0 + 2) / 2 + (1.5 + 0) / 2)
    assert get_loss("hinge").g_loss(fake).item() == pytest.approx(1.25)
    assert get_loss("wasserstein").d_loss(real, fake).item() == pytest.approx(-1.25 - 0.5)
    assert get_loss("lsgan").d_loss(real, fake).item() == pytest.approx(0.5 * (1 + 4) / 2 + 0.5 * (0.25 + 9) / 2)
    with pytest.raises(UserError, match="did you mean: hinge"):
        get_loss("hnge")


def test_ema_follows_the_formula():
    net = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(net.weight)
    ema = EMA(net, beta=0.9, rampup=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update(net, step=0)
    ema.update(net, step=1)
    # 0 -> 0.1 -> 0.19
    assert torch.allclose(ema.shadow.weight, torch.full((1, 2), 0.19))
    assert not ema.shadow.weight.requires_grad


def test_diff_augment_is_differentiable_and_seeded():
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    a = diff_augment(x, generator=torch.Generator().manual_seed(1))
    b = diff_augment(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, x)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # translation keeps content: shifting a constant image only brings in zero borders
    t = diff_augment(torch.ones(8, 1, 16, 16), "translation", generator=torch.Generator().manual_seed(0))
    assert set(t.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(diff_augment(x, "color", p=0.0), x)


def test_ada_moves_p_with_overfitting():
    ada = AdaptiveAugment(target=0.6, speed=0.1)
    ada.update(torch.ones(10))  # D certain on reals: overfitting, raise p
    assert ada.p == pytest.approx(0.1)
    ada.update(-torch.ones(10))
    ada.update(-torch.ones(10))
    assert ada.p == 0.0


def test_spectral_norm_bounds_the_largest_singular_value():
    torch.manual_seed(0)
    net = apply_spectral_norm(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4)))
    for _ in range(30):  # power iterations run on each training forward
        net(torch.randn(2, 8))
    net.eval()
    for layer in net:
        assert torch.linalg.matrix_norm(layer.weight, ord=2).item() == pytest.approx(1.0, abs=1e-3)

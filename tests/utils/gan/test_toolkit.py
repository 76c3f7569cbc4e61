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


@pytest.mark.parametrize("name", ["non_saturating", "hinge", "wasserstein", "lsgan"])
def test_every_loss_pulls_the_right_way(name):
    """D's loss falls as it scores reals higher and fakes lower; G's loss falls as D scores its fakes higher."""
    loss = get_loss(name)
    low, high = torch.full((4,), -0.5), torch.full((4,), 0.5)
    assert loss.d_loss(high, low) < loss.d_loss(low, high)
    assert loss.g_loss(high) < loss.g_loss(low)
    real = torch.tensor([0.3, -0.2], requires_grad=True)
    fake = torch.tensor([0.1, 0.4], requires_grad=True)
    loss.d_loss(real, fake).backward()
    assert (real.grad <= 0).all() and (fake.grad >= 0).all() and real.grad.abs().sum() > 0


def test_the_named_losses_are_the_ones_the_registry_hands_out():
    from utils.gan import losses

    assert get_loss("hinge").d_loss is losses.hinge_d_loss and get_loss("hinge").g_loss is losses.hinge_g_loss
    assert get_loss("non_saturating").d_loss is losses.non_saturating_d_loss


def test_ema_ramps_up_and_copies_buffers():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.BatchNorm1d(2))
    torch.nn.init.zeros_(net[0].weight)
    ema = EMA(net, beta=0.999)  # rampup: beta_t = min(0.999, (1 + t) / (10 + t))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    net.train()(torch.randn(8, 2))  # moves the batch-norm statistics
    ema.update(net, step=0)  # beta 0.1: the shadow moves 90% of the way
    assert torch.allclose(ema.shadow[0].weight, torch.full((2, 2), 0.9))
    assert torch.equal(ema.shadow[1].running_mean, net[1].running_mean)  # buffers are copied, not averaged
    ema.update(net, step=10_000)  # beta 0.999 once ramped up
    assert torch.allclose(ema.shadow[0].weight, torch.full((2, 2), 0.9 + 0.1 * 0.001))
    other = EMA(net, beta=0.999)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.shadow[0].weight, ema.shadow[0].weight)


def test_ada_probability_stays_in_unit_interval_and_round_trips():
    ada = AdaptiveAugment(target=0.6, speed=0.4)
    for _ in range(5):
        ada.update(torch.ones(4))
    assert ada.p == 1.0
    x = torch.randn(3, 1, 8, 8)
    assert not torch.equal(ada(x, torch.Generator().manual_seed(0)), x)
    other = AdaptiveAugment()
    other.load_state_dict(ada.state_dict())
    assert other.p == 1.0
    assert torch.equal(AdaptiveAugment(p=0.0)(x), x)  # p 0: the reals pass untouched


def test_cutout_blanks_one_rectangle_of_half_the_side():
    out = diff_augment(torch.ones(16, 1, 16, 16), "cutout", generator=torch.Generator().manual_seed(0))
    for img in out[:, 0]:
        rows, cols = (img == 0).any(1), (img == 0).any(0)
        assert 0 < rows.sum() <= 8 and 0 < cols.sum() <= 8
        # the zeros are exactly the product of their rows and columns: one axis-aligned rectangle
        assert torch.equal(img == 0, rows[:, None] & cols[None, :])


def test_spectral_norm_wraps_convs_and_embeddings_once():
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.Embedding(5, 4), torch.nn.BatchNorm2d(3))
    apply_spectral_norm(net)
    apply_spectral_norm(net)  # a second call adds nothing
    assert len(net[0].parametrizations.weight) == 1 and len(net[1].parametrizations.weight) == 1
    assert not hasattr(net[2], "parametrizations")


def test_recipe_defaults_are_the_dcgan_papers():
    from utils.gan.losses import LOSSES
    from utils.gan.recipe import GANRecipe

    r = GANRecipe(torch.nn.Identity(), torch.nn.Identity(), config=None)
    assert (r.loss, r.lr_g, r.lr_d, r.betas, r.n_critic) == ("non_saturating", 2e-4, 2e-4, (0.5, 0.999), 1)
    assert r.loss in LOSSES and r.train_step is None and r.gp_weight == r.r1_weight == 0.0

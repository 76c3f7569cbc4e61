"""The relativistic average GAN loss (ESRGAN's) against a hand computation and its gradients."""
import math

import torch
import torch.nn.functional as F

from utils.gan.losses import get_loss, ragan_d_loss, ragan_g_loss


def softplus(t: float) -> float:
    return math.log1p(math.exp(t))


def sigmoid(t: float) -> float:
    return 1 / (1 + math.exp(-t))


REAL = [1.0, -0.5]
FAKE = [0.2, 0.8, -1.0]


def test_ragan_d_loss_equals_the_hand_computation_and_its_gradient():
    mean_r, mean_f = sum(REAL) / 2, sum(FAKE) / 3          # 0.25, 0.0
    a = [r - mean_f for r in REAL]                          # relativistic real logits
    b = [f - mean_r for f in FAKE]                          # relativistic fake logits
    want = 0.5 * (sum(softplus(-t) for t in a) / 2 + sum(softplus(t) for t in b) / 3)
    real = torch.tensor(REAL, dtype=torch.float64, requires_grad=True)
    fake = torch.tensor(FAKE, dtype=torch.float64, requires_grad=True)
    loss = ragan_d_loss(real, fake)
    assert abs(loss.item() - want) < 1e-12
    # the same value as BasicSR writes it: BCE-with-logits against labels 1 / 0 of the shifted logits
    bce = 0.5 * (F.binary_cross_entropy_with_logits(real - fake.mean(), torch.ones(2, dtype=torch.float64))
                 + F.binary_cross_entropy_with_logits(fake - real.mean(), torch.zeros(3, dtype=torch.float64)))
    assert abs(bce.item() - want) < 1e-12
    loss.backward()
    s_a = [sigmoid(-t) for t in a]
    s_b = [sigmoid(t) for t in b]
    d_real = [0.5 * (-s_a[k] / 2 - sum(s_b) / 3 / 2) for k in range(2)]
    d_fake = [0.5 * (sum(s_a) / 2 / 3 + s_b[k] / 3) for k in range(3)]
    assert torch.allclose(real.grad, torch.tensor(d_real, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(fake.grad, torch.tensor(d_fake, dtype=torch.float64), atol=1e-12)


def test_ragan_g_loss_swaps_the_labels_and_only_reaches_the_fakes():
    mean_r, mean_f = sum(REAL) / 2, sum(FAKE) / 3
    want = 0.5 * (sum(softplus(r - mean_f) for r in REAL) / 2 + sum(softplus(-(f - mean_r)) for f in FAKE) / 3)
    real = torch.tensor(REAL, dtype=torch.float64, requires_grad=True)
    fake = torch.tensor(FAKE, dtype=torch.float64, requires_grad=True)
    loss = ragan_g_loss(fake, real)
    assert abs(loss.item() - want) < 1e-12
    loss.backward()
    assert real.grad is None                                  # D's logits on real images are constants for G
    s1 = [sigmoid(r - mean_f) for r in REAL]
    s2 = [sigmoid(-(f - mean_r)) for f in FAKE]
    d_fake = [0.5 * (-sum(s1) / 2 / 3 - s2[k] / 3) for k in range(3)]
    assert torch.allclose(fake.grad, torch.tensor(d_fake, dtype=torch.float64), atol=1e-12)
    # a generator that fools the relativistic discriminator: fakes above the reals lower its loss
    assert ragan_g_loss(torch.tensor(FAKE) + 3, torch.tensor(REAL)) < ragan_g_loss(torch.tensor(FAKE), torch.tensor(REAL))


def test_ragan_is_registered_as_relativistic_and_needs_the_real_logits():
    loss = get_loss("ragan")
    assert loss.relativistic and not get_loss("non_saturating").relativistic
    try:
        loss.g_loss(torch.zeros(3))
    except TypeError as e:
        assert "real" in str(e)
    else:
        raise AssertionError("ragan's g_loss without real logits must fail")


def test_the_builtin_trainer_step_trains_with_ragan(tmp_path):
    from train.train_gan import parse_args, train

    summary = train(parse_args(["--model", "dcgan", "--preset", "tiny", "--dataset", "digits", "--loss", "ragan",
                                "--steps", "2", "--out", str(tmp_path / "run")]))
    last = summary["history"][-1]
    assert last["step"] == 2 and math.isfinite(last["loss_g"]) and math.isfinite(last["loss_d"])

"""WGAN-GP: a critic the gradient penalty can constrain sample by sample, the paper's recipe, loading."""
from __future__ import annotations

import pytest
import torch

from models.gan.wgan_gp import PRESETS, Critic, Generator, WGANGPPipeline
from models.gan.wgan_gp.config import WGANGPConfig
from models.gan.wgan_gp.training import recipe
from utils.gan.penalties import gradient_penalty
from tests.helpers.images import signed


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_critic_has_no_batch_norm_and_scores_each_sample_alone(norm):
    torch.manual_seed(0)
    critic = Critic(WGANGPConfig(image_size=16, channels=3, ndf=8, critic_norm=norm)).train()
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    x = torch.randn(5, 3, 16, 16)
    together = critic(x)
    alone = torch.cat([critic(x[i:i + 1]) for i in range(5)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)  # no coupling across the batch
    with pytest.raises(ValueError):
        Critic(WGANGPConfig(image_size=16, critic_norm="batch"))


def test_gradient_penalty_on_the_critic_matches_a_per_sample_hand_computation():
    torch.manual_seed(0)
    critic = Critic(PRESETS["tiny"])
    real, fake = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    gp = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    eps = torch.rand(4, 1, 1, 1, generator=torch.Generator().manual_seed(3))
    terms = []
    for i in range(4):  # one interpolate at a time: possible only because the critic has no batch norm
        x = (eps[i] * real[i] + (1 - eps[i]) * fake[i])[None].requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x).sum(), x)
        terms.append((g.norm() - 1) ** 2)
    torch.testing.assert_close(gp, torch.stack(terms).mean(), rtol=1e-5, atol=1e-6)
    # the penalty is differentiable in the critic's weights (it trains the critic)
    gp.backward()
    assert critic.main[0].weight.grad.abs().sum() > 0


def test_recipe_follows_the_paper():
    r = recipe("cifar-32")
    assert (r.loss, r.gp_weight, r.n_critic, r.lr_g, r.lr_d, r.betas, r.batch_size) == \
        ("wasserstein", 10.0, 5, 1e-4, 1e-4, (0.0, 0.9), 64)
    assert isinstance(r.discriminator, Critic) and isinstance(r.generator, Generator)
    with torch.device("meta"):  # the authors' CIFAR sizes: 128-d noise, 4*DIM = 512 channels at 4x4
        g = Generator(PRESETS["cifar-32"])
    assert tuple(g.main[0].weight.shape) == (128, 512, 4, 4)


def test_pipeline_and_native_round_trip(tmp_path):
    from models import generate
    from utils.weights import save_native

    out = generate("gan", "wgan_gp", preset="tiny", num_images=3, seed=1)
    assert signed(out).shape == (3, 3, 16, 16)
    torch.manual_seed(0)
    g = Generator(PRESETS["digits"]).eval()
    save_native(tmp_path / "generator.safetensors", g.state_dict(), PRESETS["digits"])
    pipe = WGANGPPipeline.from_pretrained(str(tmp_path / "generator.safetensors"))
    assert pipe.config == PRESETS["digits"]
    z = torch.randn(2, 64)
    with torch.no_grad():
        torch.testing.assert_close(signed(pipe(latents=z)), g(z))
    torch.save({f"netG.{k}": v for k, v in g.state_dict().items()}, tmp_path / "g.pth")  # a bare PyTorch state_dict
    assert WGANGPPipeline.from_pretrained(str(tmp_path / "g.pth")).config.latent_dim == 64

"""Progressive GAN: the pytorch_GAN_zoo layout at full size, fade-in, equalized lr, pixel norm, minibatch std."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models.gan.progressive_gan import PRESETS, Discriminator, Generator, ProgressiveGANPipeline
from models.gan.progressive_gan.convert import convert_discriminator, convert_generator, infer_generator_config
from models.gan.progressive_gan.layers import EqualizedConv2d, EqualizedLinear, minibatch_stddev, pixel_norm
from models.gan.progressive_gan.training import OFFICIAL_SCHEDULE, GrowthSchedule, real_at
from utils.errors import ConversionError
from tests.helpers.images import signed

FIXTURE = Path(__file__).parent / "fixtures" / "pgan_celebahq_1024_keys.json"


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def test_official_checkpoint_layout_at_full_size_on_meta():
    """Every key and shape of a grown pytorch_GAN_zoo PGAN checkpoint (netG, avgG, netD) maps onto ours."""
    official = json.loads(FIXTURE.read_text())["keys"]
    meta_sd = {k: torch.empty(s, device="meta") for k, s in official.items()}
    config = infer_generator_config(meta_sd)
    assert config == PRESETS["celebahq-1024"] and config.image_size == 1024
    with torch.device("meta"):
        g, d = Generator(config), Discriminator(config)
    assert {k: list(v.shape) for k, v in convert_generator(meta_sd).items()} == _shapes(g)
    assert {k: list(v.shape) for k, v in convert_discriminator(meta_sd).items()} == _shapes(d)
    # the averaged generator is the one taken when both are present
    marked = {**meta_sd, "avgG.formatLayer.module.bias": torch.full((8192,), 7.0)}
    assert convert_generator(marked)["formatLayer.module.bias"][0] == 7.0


def test_pgan_checkpoint_loads_through_the_real_code(tmp_path):
    torch.manual_seed(0)
    config = PRESETS["tiny"]
    g, avg, d = Generator(config), Generator(config), Discriminator(config)
    for p in list(g.parameters()) + list(avg.parameters()):
        p.data.normal_()  # non-zero biases, so a bias that skipped the He scaling would show
    torch.save({"config": {"dimLatentVector": 8}, "netG": g.state_dict(), "avgG": avg.state_dict(),
                "netD": d.state_dict()}, tmp_path / "pgan.pth")
    pipe = ProgressiveGANPipeline.from_pretrained(str(tmp_path / "pgan.pth"), device="cpu")
    assert pipe.config == config
    z = torch.randn(3, 8)
    out = signed(pipe(latents=z))
    with torch.no_grad():
        torch.testing.assert_close(out, avg(z).clamp(-1, 1), rtol=0, atol=1e-6)  # pixels are clipped to [0, 1]
    torch.save({"foo": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ConversionError, match="no Progressive GAN generator"):
        ProgressiveGANPipeline.from_pretrained(str(tmp_path / "other.pth"))


def test_fade_in_alpha_blends_previous_scale_and_new_one():
    torch.manual_seed(0)
    config = PRESETS["digits-32"]
    g, d = Generator(config).eval(), Discriminator(config).eval()
    z = torch.randn(4, config.latent_dim)
    with torch.no_grad():
        low = g(z, depth=1)  # 8x8, fully faded in
        at0, at1, half = g(z, depth=2, alpha=0.0), g(z, depth=2, alpha=1.0), g(z, depth=2, alpha=0.5)
        assert at0.shape[-1] == 16
        torch.testing.assert_close(at0, F.interpolate(low, scale_factor=2, mode="nearest"))  # the upsampled old output
        torch.testing.assert_close(at1, g(z, depth=2))  # the new scale alone
        assert not torch.allclose(at0, at1)
        torch.testing.assert_close(half, (at0 + at1) / 2)
        # the discriminator fades the same way: at alpha 0 it sees the downsampled image through the old path
        x = torch.randn(4, 1, 16, 16)
        torch.testing.assert_close(d(x, depth=2, alpha=0.0), d(F.avg_pool2d(x, 2), depth=1))
    assert g(z).shape[-1] == 32  # by default the full depth


def test_equalized_lr_scale_is_he_constant():
    torch.manual_seed(0)
    g = Generator(PRESETS["digits-32"])
    layers = [m for m in g.modules() if isinstance(m, (EqualizedConv2d, EqualizedLinear))]
    assert len(layers) == 1 + 1 + 2 * 3 + 4
    for m in layers:
        fan_in = m.module.weight[0].numel()
        assert m.scale == pytest.approx(math.sqrt(2.0 / fan_in))
    conv = g.scaleLayers[0][0]
    assert abs(conv.module.weight.std().item() - 1.0) < 0.05  # stored weights are N(0, 1)
    conv.module.bias.data.normal_()
    x = torch.randn(2, 64, 8, 8)
    c = math.sqrt(2.0 / (64 * 9))
    # the runtime scaling applies to the whole output, as in pytorch_GAN_zoo
    want = F.conv2d(x, conv.module.weight * c, conv.module.bias * c, padding=1)
    torch.testing.assert_close(conv(x), want, rtol=1e-5, atol=1e-5)


def test_pixel_norm_gives_unit_rms_per_pixel():
    x = torch.randn(3, 16, 5, 5) * 7 + 2
    rms = pixel_norm(x).pow(2).mean(dim=1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), rtol=1e-5, atol=1e-5)


def test_minibatch_std_channel_on_a_known_batch():
    # 4 samples, 2 features, 1x1: feature 0 = 0, 1, 2, 3 (unbiased std sqrt(5/3)); feature 1 constant (std 0)
    x = torch.tensor([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0], [3.0, 5.0]]).reshape(4, 2, 1, 1)
    out = minibatch_stddev(x, group_size=4)
    assert out.shape == (4, 3, 1, 1)
    torch.testing.assert_close(out[:, :2], x)
    want = (math.sqrt(5 / 3 + 1e-8) + math.sqrt(1e-8)) / 2
    torch.testing.assert_close(out[:, 2].flatten(), torch.full((4,), want))
    # groups of 2 are consecutive samples: {0, 1} and {2, 3}, each with std sqrt(0.5) on feature 0
    out2 = minibatch_stddev(x.expand(4, 2, 3, 3), group_size=2)
    torch.testing.assert_close(out2[:, 2], torch.full((4, 3, 3), (math.sqrt(0.5 + 1e-8) + 1e-4) / 2))
    # a batch of one has no spread
    assert minibatch_stddev(x[:1])[:, 2].abs().max() == 0


def test_growth_schedule():
    s = GrowthSchedule((4, 6, 6), (0, 3, 3))
    stages = [s.at(i) for i in range(16)]
    assert stages[:4] == [(0, 1.0)] * 4
    assert [a for _, a in stages[4:7]] == [0.25, 0.5, 0.75] and stages[7] == (1, 1.0)
    assert stages[10][0] == 2 and stages[15] == (2, 1.0) and s.at(100) == (2, 1.0)
    assert OFFICIAL_SCHEDULE.total == 48000 + 7 * 96000 + 200000
    small = OFFICIAL_SCHEDULE.scaled(90)
    assert small.total in range(85, 96) and [d for d, _ in (small.at(i) for i in range(small.total))][-1] == 8
    x = torch.randn(2, 3, 16, 16)
    assert real_at(x, 0, 1.0, 3).shape[-1] == 4
    torch.testing.assert_close(real_at(x, 2, 0.0, 3), F.interpolate(F.avg_pool2d(x, 2), scale_factor=2))


@pytest.mark.parametrize("zipped", [True, False])
def test_release_checkpoint_with_pickled_config_object_loads_safely(tmp_path, monkeypatch, zipped):
    """pytorch_GAN_zoo saves its BaseConfig object beside the weights; it is read as inert data."""
    import sys
    import types

    fake = types.ModuleType("models.utils.config")
    BaseConfig = type("BaseConfig", (), {"__module__": "models.utils.config"})
    fake.BaseConfig = BaseConfig
    monkeypatch.setitem(sys.modules, "models.utils", types.ModuleType("models.utils"))
    monkeypatch.setitem(sys.modules, "models.utils.config", fake)
    cfg = BaseConfig()
    cfg.depthScales, cfg.dimLatentVector = [16, 8], 8
    torch.manual_seed(0)
    g = Generator(PRESETS["tiny"])
    torch.save({"config": cfg, "netG": g.state_dict(), "netD": Discriminator(PRESETS["tiny"]).state_dict(),
                "avgG": g.state_dict()}, tmp_path / "pgan.pth", _use_new_zipfile_serialization=zipped)
    monkeypatch.delitem(sys.modules, "models.utils.config")  # the release's code is not importable here
    pipe = ProgressiveGANPipeline.from_pretrained(str(tmp_path / "pgan.pth"))
    z = torch.randn(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(signed(pipe(latents=z)), g.eval()(z).clamp(-1, 1))

"""Vanilla GAN: shapes, conditioning, prefixed checkpoints, and the shipped digits weights."""
from __future__ import annotations

import torch

from models.gan.vanilla_gan import PRESETS, Discriminator, Generator, VanillaGANPipeline
from models.gan.vanilla_gan.convert import infer_generator_config
from tests.helpers.images import signed


def test_mnist_preset_sizes():
    g, d = Generator(PRESETS["mnist"]), Discriminator(PRESETS["mnist"])
    x = g(torch.randn(2, 100))
    assert x.shape == (2, 1, 28, 28) and x.abs().max() <= 1
    assert d(x).shape == (2,)
    assert [tuple(w.shape) for k, w in g.state_dict().items() if k.endswith("weight")] == \
        [(256, 100), (512, 256), (1024, 512), (784, 1024)]


def test_prefixed_torch_checkpoint_loads(tmp_path):
    torch.manual_seed(0)
    ref = Generator(PRESETS["tiny"]).eval()
    torch.save({"generator." + k: v for k, v in ref.state_dict().items()}, tmp_path / "g.pt")
    inferred, tiny = infer_generator_config(ref.state_dict()), PRESETS["tiny"]
    for field in ("image_size", "channels", "latent_dim", "g_hidden", "num_classes"):
        assert getattr(inferred, field) == getattr(tiny, field), field
    pipe = VanillaGANPipeline.from_pretrained(str(tmp_path / "g.pt"))
    z = torch.randn(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(signed(pipe(latents=z)), ref(z), rtol=0, atol=1e-6)


def test_shipped_digits_weights_follow_the_class():
    from benchmarks.digits_gans import class_accuracy, digits_classifier

    clf, _ = digits_classifier()
    out = VanillaGANPipeline.from_pretrained(preset="digits")(num_images=200, seed=2)
    assert class_accuracy(clf, signed(out), out.labels) > 0.7

"""DCGAN: the PyTorch examples layout, loading through the real code, seeds, prompts, shipped weights."""
from __future__ import annotations

import pytest
import torch

from models.gan.dcgan import PRESETS, DCGANPipeline, Discriminator, Generator
from models.gan.dcgan.convert import infer_generator_config
from utils.errors import ConversionError, UserError
from tests.helpers.images import signed

# The PyTorch examples DCGAN (examples/dcgan/main.py, nz=100, ngf=ndf=64, nc=3): every key and shape of
# netG.pth and netD.pth (BatchNorm buffers included), as written by torch.save(net.state_dict()).
def _bn(i: int, c: int) -> dict[str, tuple[int, ...]]:
    return {f"main.{i}.weight": (c,), f"main.{i}.bias": (c,), f"main.{i}.running_mean": (c,),
            f"main.{i}.running_var": (c,), f"main.{i}.num_batches_tracked": ()}


OFFICIAL_NETG = {"main.0.weight": (100, 512, 4, 4), **_bn(1, 512), "main.3.weight": (512, 256, 4, 4), **_bn(4, 256),
                 "main.6.weight": (256, 128, 4, 4), **_bn(7, 128), "main.9.weight": (128, 64, 4, 4), **_bn(10, 64),
                 "main.12.weight": (64, 3, 4, 4)}
OFFICIAL_NETD = {"main.0.weight": (64, 3, 4, 4), "main.2.weight": (128, 64, 4, 4), **_bn(3, 128),
                 "main.5.weight": (256, 128, 4, 4), **_bn(6, 256), "main.8.weight": (512, 256, 4, 4), **_bn(9, 512),
                 "main.11.weight": (1, 512, 4, 4)}


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_official_layout_at_full_size_on_meta():
    with torch.device("meta"):
        g, d = Generator(PRESETS["celeba-64"]), Discriminator(PRESETS["celeba-64"])
    assert _shapes(g) == OFFICIAL_NETG
    assert _shapes(d) == OFFICIAL_NETD
    meta_sd = {k: torch.empty(s, device="meta") for k, s in OFFICIAL_NETG.items()}
    assert infer_generator_config(meta_sd) == PRESETS["celeba-64"]


def test_examples_netG_pth_loads_through_the_real_code(tmp_path):
    """A netG.pth in the examples' layout (here behind DataParallel's prefix) gives the same images."""
    torch.manual_seed(0)
    config = PRESETS["tiny"]
    ref = Generator(config).eval()
    for m in ref.modules():  # non-trivial BN statistics, so a skipped buffer would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
    torch.save({f"module.{k}": v for k, v in ref.state_dict().items()}, tmp_path / "netG.pth")
    pipe = DCGANPipeline.from_pretrained(str(tmp_path / "netG.pth"), device="cpu")
    assert pipe.config.latent_dim == config.latent_dim and pipe.config.image_size == 16
    z = torch.randn(3, config.latent_dim)
    out = signed(pipe(latents=z))
    with torch.no_grad():
        torch.testing.assert_close(out, ref(z), rtol=0, atol=1e-6)
    # a folder holding the file also works
    assert DCGANPipeline.from_pretrained(str(tmp_path), device="cpu").config == pipe.config


def test_wrong_checkpoint_names_keys(tmp_path):
    sd = Generator(PRESETS["tiny"]).state_dict()
    del sd["main.1.running_mean"]
    sd["extra.bias"] = torch.zeros(3)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ConversionError, match="missing: main.1.running_mean; unexpected: extra.bias"):
        DCGANPipeline.from_pretrained(str(tmp_path / "bad.pth"))
    torch.save({"foo": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ConversionError, match="not a DCGAN generator"):
        DCGANPipeline.from_pretrained(str(tmp_path / "other.pth"))


def test_same_seed_same_images_and_prompts():
    pipe = DCGANPipeline.from_pretrained(preset="digits")
    a = signed(pipe(num_images=4, seed=7))
    b = signed(pipe(num_images=4, seed=7))
    c = signed(pipe(num_images=4, seed=8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    out = pipe(num_images=3, seed=0, prompt="7")
    assert out.labels.tolist() == [7, 7, 7]
    assert pipe(num_images=12, seed=0).labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    with pytest.raises(UserError, match="not a class"):
        pipe(prompt="cat")
    with pytest.raises(UserError, match="32x32"):
        pipe(height=64)
    with pytest.raises(UserError, match="--steps does not apply"):
        pipe(steps=20)


def test_unconditional_refuses_a_prompt():
    pipe = DCGANPipeline.from_pretrained(preset="tiny")
    with pytest.raises(UserError, match="unconditional"):
        pipe(prompt="7")


def test_shipped_digits_weights_make_recognisable_digits():
    """A classifier trained on the real digits recognises the class each generated image was asked for."""
    from benchmarks.digits_gans import class_accuracy, digits_classifier

    clf, ceiling = digits_classifier()
    out = DCGANPipeline.from_pretrained(preset="digits")(num_images=200, seed=1)
    accuracy = class_accuracy(clf, signed(out), out.labels)
    assert accuracy > 0.8 and ceiling > 0.9, (accuracy, ceiling)


def test_shipped_grid_is_unchanged_by_the_house_move(tmp_path):
    """The bare quickstart's grid (`generate_image.py`, seed 0) is pixel-identical to the one the code made
    before the libraries moved (fixtures/dcgan_digits_seed0.png, written at commit 12d0ca3)."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from inference.generate_image import main

    main(["--out", str(tmp_path / "grid.png")])
    fixture = Path(__file__).parent / "fixtures" / "dcgan_digits_seed0.png"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "grid.png")), np.asarray(Image.open(fixture)))

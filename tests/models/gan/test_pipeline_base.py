"""The GAN pipeline base: where weights come from, what a folder may hold, a checkpoint against a named preset,
the output it builds, and the pipelines that sit on it."""
from __future__ import annotations

import json

import pytest
import torch

from models.gan.pipeline_base import GANPipeline, LatentGANPipeline
from utils.errors import UserError
from utils.weights import save_native
from tests.helpers.images import signed


def test_every_gan_pipeline_sits_on_the_base():
    from models.gan.biggan import BigGANPipeline
    from models.gan.cyclegan import CycleGANPipeline
    from models.gan.vqgan import VQGANPipeline
    from models.registry import specs

    for spec in specs("gan"):
        assert issubclass(spec.pipeline_class(), GANPipeline), spec.name
    assert issubclass(BigGANPipeline, LatentGANPipeline)
    assert not issubclass(VQGANPipeline, LatentGANPipeline) and not issubclass(CycleGANPipeline, LatentGANPipeline)


def test_a_package_source_is_the_file_shipped_in_the_repo():
    from models.gan.dcgan import DCGANPipeline

    shipped = DCGANPipeline.from_pretrained("package:models/gan/dcgan/weights/digits.safetensors", device="cpu")
    registered = DCGANPipeline.from_pretrained(preset="digits", device="cpu")
    assert torch.equal(signed(shipped(num_images=4, seed=2)), signed(registered(num_images=4, seed=2)))


def test_a_folder_must_hold_one_checkpoint(tmp_path):
    from models.gan.wgan_gp import PRESETS, Generator, WGANGPPipeline

    g = Generator(PRESETS["tiny"])
    save_native(tmp_path / "a.safetensors", g.state_dict(), PRESETS["tiny"])
    assert WGANGPPipeline.from_pretrained(str(tmp_path)).config == PRESETS["tiny"]
    save_native(tmp_path / "b.safetensors", g.state_dict(), PRESETS["tiny"])
    with pytest.raises(UserError, match="holds 2 checkpoint files: pass the file itself"):
        WGANGPPipeline.from_pretrained(str(tmp_path))


def test_a_folder_of_named_files_is_searched_in_order(tmp_path):
    from models.gan.biggan import PRESETS, BigGANPipeline

    (tmp_path / "config.json").write_text(json.dumps(PRESETS["tiny"].to_reference_dict()))
    with pytest.raises(UserError, match="no biggan weights in .*pytorch_model.bin"):
        BigGANPipeline.from_pretrained(str(tmp_path))


def test_a_checkpoint_named_with_another_preset_is_refused(tmp_path):
    from models.gan.dcgan import PRESETS, DCGANPipeline, Generator

    save_native(tmp_path / "g.safetensors", Generator(PRESETS["tiny"]).state_dict(), PRESETS["tiny"])
    with pytest.raises(UserError, match="do not fit dcgan preset 'digits'"):
        DCGANPipeline.from_pretrained(str(tmp_path / "g.safetensors"), preset="digits")
    assert DCGANPipeline.from_pretrained(str(tmp_path / "g.safetensors")).config == PRESETS["tiny"]


def test_a_preset_without_weights_says_what_to_pass():
    from models.gan.wgan_gp import WGANGPPipeline

    with pytest.raises(UserError, match="no weights are registered for wgan_gp preset 'digits'"):
        WGANGPPipeline.from_pretrained(preset="digits")


def test_cyclegan_refuses_an_unknown_direction():
    from models.gan.cyclegan import CycleGANPipeline

    with pytest.raises(UserError, match="AtoB or BtoA"):
        CycleGANPipeline.from_pretrained(preset="tiny", direction="sideways")


def test_the_output_of_images_in_minus_one_to_one():
    x = torch.tensor([-1.0, 0.0, 1.0, 3.0]).view(1, 1, 2, 2)
    out = GANPipeline.output(x, labels=torch.tensor([4]))
    assert torch.equal(out.pixels, torch.tensor([0.0, 0.5, 1.0, 1.0]).view(1, 1, 2, 2))  # clipped to [0, 1]
    assert out.labels.tolist() == [4] and out.images[0].size == (2, 2)
    same = GANPipeline.output([torch.zeros(3, 4, 4), torch.ones(3, 4, 4)], names=["a", "b"])
    assert same.pixels.shape == (2, 3, 4, 4) and same.names == ["a", "b"]
    mixed = GANPipeline.output([torch.zeros(3, 4, 4), torch.zeros(3, 8, 4)], names=["a", "b"])
    assert mixed.pixels is None and [im.size for im in mixed.images] == [(4, 4), (4, 8)] and mixed.names == ["a", "b"]


def test_one_seed_one_stream_for_every_gan():
    """The seed rule of the GAN pipelines: one CPU generator per call, so a batch equals the same seed's
    latents drawn at once, and another seed gives other images."""
    from models.gan.biggan import BigGANPipeline, truncated_noise

    pipe = BigGANPipeline.from_pretrained(preset="tiny", device="cpu")
    out = pipe(num_images=3, seed=5)
    gen = torch.Generator().manual_seed(5)
    assert torch.equal(out.latents, truncated_noise((3, pipe.config.z_dim), 0.4, gen))
    assert torch.equal(out.labels, torch.randint(0, pipe.config.num_classes, (3,), generator=gen))
    assert not torch.equal(signed(out), signed(pipe(num_images=3, seed=6)))

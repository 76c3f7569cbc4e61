"""evaluate/ppl_score.py end to end on the shipped class-conditional DCGAN (digits) with a random LPIPS-VGG
backbone written as a torchvision checkpoint; the figure is checked against the metric computed by hand
from the stated recipe (slerp on the sphere scaled by sqrt(dim), one class per pair); one-line errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import models
from utils.metrics.lpips import LPIPS
from utils.metrics.ppl import filter_percentiles, slerp


@pytest.fixture(scope="module")
def vgg_backbone(tmp_path_factory):
    """Random VGG16 feature layers saved under torchvision's key names (features.{i}.weight ...)."""
    torch.manual_seed(0)
    features = LPIPS("vgg", heads=False).features  # torchvision's layer indices, up to the last LPIPS tap
    path = tmp_path_factory.mktemp("vgg") / "vgg16-397923af.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path


def _by_hand(backbone, n: int, seed: int, label: int) -> np.ndarray:
    """The distances of the stated recipe, written out without the CLI or `perceptual_path_length`."""
    pipe = models.load("gan", "dcgan", preset="digits", device="cpu")
    lp = LPIPS.from_pretrained("vgg", backbone_weights=backbone)
    dim = math.prod(pipe.generator.latent_shape)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(2 * n, dim, generator=gen)
    t = torch.rand(n, generator=gen)
    a, b = z[:n], z[n:]
    lat = torch.cat([slerp(a, b, t), slerp(a, b, t + 1e-4)]) * math.sqrt(dim)
    y = torch.full((2 * n,), label)
    with torch.no_grad():
        images = pipe.generator(lat.reshape(-1, *pipe.generator.latent_shape), y).float()
        images = images.expand(-1, 3, -1, -1)  # grey digits are compared as RGB
        return (lp(images[:n], images[n:]) / 1e-8).double().numpy()


def test_ppl_of_the_shipped_dcgan(tmp_path, vgg_backbone, call_script):
    out_npy = tmp_path / "d.npy"
    code, out, err = call_script("ppl_score", "--model", "dcgan", "--preset", "digits", "--num-samples", "6",
                                 "--batch-size", "6", "--class", "7", "--lpips-backbone", vgg_backbone,
                                 "--device", "cpu", "--quiet", "--save-distances", out_npy)
    assert code == 0, err
    distances = np.load(out_npy)
    expected = _by_hand(vgg_backbone, 6, 0, 7)
    np.testing.assert_allclose(distances, expected, rtol=1e-3)  # float32 LPIPS of images 1e-4 apart, / 1e-8
    value = float(out.split("): ")[1].split()[0])
    assert abs(value - filter_percentiles(distances).mean()) <= 1e-5 * value and value > 0
    assert out.startswith("PPL (z, full, epsilon 0.0001): ") and "(6 pairs" in out
    # classes in turn, another seed: another figure
    code, out2, err = call_script("ppl_score", "--model", "dcgan", "--preset", "digits", "--num-samples", "4",
                                  "--lpips-backbone", vgg_backbone, "--device", "cpu", "--quiet", "--seed", "3",
                                  "--sampling", "end", "--crop")
    assert code == 0, err
    assert out2.startswith("PPL (z, end, crop, epsilon 0.0001): ") and float(out2.split("): ")[1].split()[0]) > 0


def test_bad_inputs_are_one_line(tmp_path, vgg_backbone, call_script, one_line_error):
    v = ["--lpips-backbone", vgg_backbone, "--device", "cpu", "--quiet"]
    for args, fragments in [
        (("--model", "dcgn", *v), ["did you mean: dcgan"]),
        (("--model", "cyclegan", "--preset", "tiny", *v), ["cyclegan maps images to images", "dcgan"]),
        (("--model", "biggan", "--preset", "tiny", *v), ["biggan draws its latents from its own distribution"]),
        (("--model", "dcgan", "--preset", "tiny", "--class", "7", *v), ["unconditional"]),
        (("--model", "dcgan", "--preset", "digits", "--class", "eleven", *v), ["'eleven' is not a class"]),
        (("--model", "dcgan", "--preset", "tiny", "--num-samples", "1", *v), ["--num-samples must be at least 2"]),
        (("--model", "dcgan", "--preset", "tiny", "--epsilon", "0", *v), ["--epsilon must be positive"]),
        (("--model", "dcgan", "--preset", "tiny", "--save-distances", tmp_path / "d.txt", *v), ["needs a .npy"]),
        (("--model", "dcgan", "--preset", "tiny", "--device", "cpu"), ["vgg16-397923af.pth", "offline",
                                                                        "--lpips-backbone PATH"]),
        (("--model", "dcgan", "--weights", tmp_path / "none.safetensors", *v), ["none.safetensors"]),
    ]:
        one_line_error(*call_script("ppl_score", *args)[::2], *fragments)


def test_help_is_complete_and_the_file_runs_from_anywhere(run_script):
    res = run_script("ppl_score", "--help")
    text = " ".join(res.stdout.split())
    assert res.returncode == 0, res.stderr
    assert all(k in text for k in ("--model", "--preset", "--weights", "--num-samples", "--sampling", "--epsilon",
                                   "--crop", "--class", "--seed", "--lpips-backbone", "--save-distances", "sqrt"))

"""BigGAN-deep and VQGAN through train_gan.py: their losses fall from the start on digits, a run resumed from
a checkpoint repeats the uninterrupted one bit for bit, and the exported weights load through the pipelines."""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import pytest
import torch

import models
from utils.training import load_checkpoint
from utils.weights import flatten_tensors
from train.train_gan import parse_args, train
from tests.helpers.images import signed


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These networks are tiny: one thread is as fast, and much faster on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run(out: Path, model: str, steps: int, *extra: str) -> dict:
    args = parse_args(["--model", model, "--preset", "tiny", "--dataset", "digits", "--steps", str(steps),
                       "--out", str(out), "--ckpt-every", "3", "--sample-every", "1000", "--keep", "10",
                       "--no-progress", "--cpu", *extra])
    return train(args)


def _mean(hist: list[dict], key: str, part: slice) -> float:
    vals = [h[key] for h in hist[part]]
    return sum(vals) / len(vals)


def _assert_resume_exact(tmp: Path, full: dict, model: str, parts: tuple[str, ...], *extra: str) -> None:
    """Resume the 6-step run from its step-3 checkpoint into another folder; everything after matches."""
    full_dir = Path(full["out"])
    resumed = _run(tmp / "resumed", model, 6, "--resume", str(full_dir / "checkpoints" / "step_0000003.pt"), *extra)
    assert resumed["history"] == full["history"][3:]
    a = load_checkpoint(full_dir / "checkpoints" / "step_0000006.pt")
    b = load_checkpoint(tmp / "resumed" / "checkpoints" / "step_0000006.pt")
    for part in parts:
        ta, tb = flatten_tensors(a[part]), flatten_tensors(b[part])
        assert ta and ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), part
    from safetensors.torch import load_file

    ga, gb = load_file(full_dir / "generator.safetensors"), load_file(tmp / "resumed" / "generator.safetensors")
    assert ga.keys() == gb.keys() and all(torch.equal(ga[k], gb[k]) for k in ga)  # the exported weights too


# -- BigGAN ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def biggan_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("biggan") / "full"
    return _run(out, "biggan", 6, "--batch-size", "16")


def test_biggan_discriminator_learns_and_exports(biggan_run):
    hist = biggan_run["history"]
    assert _mean(hist, "loss_d", slice(-2, None)) < _mean(hist, "loss_d", slice(0, 2)), hist  # hinge D loss falls
    assert all(h["ortho"] > 0 for h in hist)  # the orthogonal regulariser is on
    state = load_checkpoint(Path(biggan_run["out"]) / "checkpoints" / "step_0000006.pt")
    for key in ('"n_critic": 2', '"loss": "hinge"', '"ema_beta": 0.9999', '"lr_g": 0.0001', '"lr_d": 0.0004',
                '"betas": [0.0, 0.999]'):
        assert key in state["settings"], key
    assert (Path(biggan_run["out"]) / "samples" / "step_0000006.png").exists()

    pipe = models.load("gan", "biggan", weights=biggan_run["generator"], preset="tiny", device="cpu")
    # the sampler filled the standing batch-norm statistics before the export
    norm = pipe.generator.blocks[0].norm0
    assert not torch.equal(norm.running_means, torch.zeros_like(norm.running_means))
    out = pipe(num_images=4, class_labels=[0, 1, 2, 3], truncation=0.5, seed=0)
    images = signed(out)
    assert images.shape == (4, 3, 16, 16) and torch.isfinite(images).all() and images.std() > 0.01


def test_biggan_resume_is_bit_exact(biggan_run, tmp_path):
    _assert_resume_exact(tmp_path, biggan_run, "biggan", ("generator", "discriminator", "ema", "opt_g", "opt_d"),
                         "--batch-size", "16")


def test_biggan_trains_on_a_class_folder(tmp_path):
    from PIL import Image

    for c, colour in (("cats", (200, 30, 30)), ("dogs", (30, 30, 200))):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (20, 20), tuple(v + 10 * i for v in colour)).save(tmp_path / "data" / c / f"{i}.png")
    args = parse_args(["--model", "biggan", "--preset", "tiny", "--dataset", str(tmp_path / "data"), "--steps", "1",
                       "--batch-size", "4", "--out", str(tmp_path / "out"), "--no-progress", "--cpu"])
    s = train(args)
    assert len(s["history"]) == 1 and Path(s["generator"]).exists()


def test_biggan_orthogonal_regulariser_of_tall_weights_is_the_gram_formula():
    """The training step regularises G's tall stem through the small Gram matrix: the same value as
    the off-diagonal entries of the big one, computed here directly."""
    from models.gan.biggan import orthogonal_regularization

    g = torch.Generator().manual_seed(0)
    tall = torch.randn(40, 6, generator=g, dtype=torch.float64)
    conv = torch.randn(5, 3, 3, 3, generator=g, dtype=torch.float64)  # wide: the direct route
    expected = 0.0
    for m in (tall, conv.flatten(1)):
        gram = m @ m.t()
        expected = expected + (gram * (1 - torch.eye(len(m), dtype=torch.float64))).pow(2).sum()
    assert torch.allclose(orthogonal_regularization([tall, conv], 1e-4), 1e-4 * expected, rtol=1e-10)


# -- VQGAN -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vqgan_run(tmp_path_factory):
    import models.gan.vqgan.training as vq_training

    mp = pytest.MonkeyPatch()
    # the discriminator starts at step 3 here (the digits recipe starts it at 500)
    mp.setattr(vq_training, "recipe", functools.partial(vq_training.recipe, disc_start=3))
    mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))  # no cached VGG16: the LPIPS fallback
    out = tmp_path_factory.mktemp("vqgan") / "full"
    try:
        yield _run(out, "vqgan", 6, "--batch-size", "8"), mp
    finally:
        mp.undo()


def test_vqgan_reconstruction_falls_and_exports_the_autoencoder(vqgan_run):
    run, _ = vqgan_run
    hist = run["history"]
    assert _mean(hist, "ae/rec", slice(-2, None)) < _mean(hist, "ae/rec", slice(0, 2)), hist
    assert [h["ae/disc_factor"] for h in hist] == [0, 0, 0, 1, 1, 1]  # the discriminator start step
    assert all(h["ae/d_weight"] > 0 for h in hist[3:]) and all(h["d/loss"] > 0 for h in hist[3:])
    # offline, without the VGG16 backbone, the recipe falls back to perceptual weight 0 and says so
    assert all(h["ae/perceptual_weight"] == 0.0 for h in hist)
    assert (Path(run["out"]) / "samples" / "step_0000006.png").exists()

    pipe = models.load("gan", "vqgan", weights=run["generator"], preset="tiny", device="cpu")
    from utils.data.digits import DigitsDataset

    x = torch.stack([DigitsDataset(size=32, split="test")[i]["image"] for i in range(4)]).expand(-1, 3, -1, -1)
    out = pipe(image=x)
    assert signed(out).shape == (4, 3, 32, 32) and out.indices.shape == (4, 16, 16)
    # the exported autoencoder reconstructs better than its initialisation
    init = models.load("gan", "vqgan", preset="tiny", device="cpu")
    err = lambda p: (signed(p(image=x)) - x).abs().mean()  # noqa: E731
    assert err(pipe) < err(init)


def test_vqgan_resume_is_bit_exact(vqgan_run, tmp_path):
    run, _ = vqgan_run
    _assert_resume_exact(tmp_path, run, "vqgan", ("generator", "discriminator", "opt_g", "opt_d"), "--batch-size", "8")


def test_vqgan_logs_the_lpips_fallback(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with caplog.at_level(logging.WARNING):
        _run(tmp_path, "vqgan", 1, "--batch-size", "2")
    assert "perceptual weight 0" in caplog.text


@pytest.mark.slow
def test_vqgan_with_a_random_backbone_lpips(tmp_path, monkeypatch):
    """The perceptual term through the loop (LPIPS(vgg) with random weights: a test of the wiring only)."""
    import models.gan.vqgan.training as vq_training

    monkeypatch.setattr(vq_training, "recipe", functools.partial(vq_training.recipe, perceptual="random"))
    s = _run(tmp_path, "vqgan", 2, "--batch-size", "2")
    assert all(h["ae/perceptual"] > 0 and h["ae/perceptual_weight"] == 1.0 for h in s["history"])

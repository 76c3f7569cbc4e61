"""StyleGAN3 / StyleGAN2 training through train/train_gan.py, and the regularisers it uses (utils/gan).

The recipe is NVlabs' (models/gan/stylegan3/training.py): phases, lazy regularisation, style mixing, path
length, G EMA ramp-up and ADA. A resumed run repeats the uninterrupted one bit for bit, with the path
length mean and ADA's state carried in the discriminator wrapper's buffers.
"""
from __future__ import annotations

import math

import pytest
import torch

from utils.gan.ema import stylegan_ema_beta
from utils.gan.regularizers import (fading_blur_sigma, gaussian_blur, lazy_adam_hparams, mixing_cutoff,
                                    path_length_penalty)


def _train(out, *extra):
    from train.train_gan import parse_args, train

    argv = ["--model", "stylegan3", "--preset", "tiny", "--data", "digits", "--batch", "4", "--out", str(out),
            "--no-progress", "--cpu", "--sample-every", "1000", "--ckpt-every", "2", *extra]
    return train(parse_args(argv))


def test_regularisers_follow_the_release():
    lr, betas = lazy_adam_hparams(0.0025, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.0025 * 16 / 17) and betas == (0.0, pytest.approx(0.99 ** (16 / 17)))
    assert lazy_adam_hparams(0.002, (0.0, 0.99), None) == (0.002, (0.0, 0.99))
    assert fading_blur_sigma(0, 10, 200) == 10 and fading_blur_sigma(100_000, 10, 200) == 5
    assert fading_blur_sigma(500_000, 10, 200) == 0
    flat = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(gaussian_blur(flat, 2.0)[..., 6:-6, 6:-6], flat[..., 6:-6, 6:-6])  # unit DC gain
    gen = torch.Generator().manual_seed(0)
    cuts = [mixing_cutoff(8, 0.9, gen) for _ in range(2000)]
    assert 0.85 < sum(c < 8 for c in cuts) / 2000 < 0.95 and min(cuts) == 1
    assert mixing_cutoff(8, 0.0, gen) == 8


def test_path_length_penalty_is_the_jacobian_norm():
    w = torch.randn(3, 2, 4, requires_grad=True)
    a = torch.randn(4, 5)
    h = torch.tanh(w @ a)
    images = h.reshape(3, 1, 2, 5)
    gen = torch.Generator().manual_seed(1)
    penalty, length, mean = path_length_penalty(images, w, torch.tensor(0.5), decay=0.1, generator=gen)
    y = torch.randn(images.shape, generator=torch.Generator().manual_seed(1)) / math.sqrt(10)
    jt = ((y.reshape(3, 2, 5) * (1 - h.detach().square())) @ a.t())  # J^T y of tanh(w a), by hand
    lengths = jt.square().sum(2).mean(1).sqrt()
    assert torch.allclose(length, lengths.mean())
    assert torch.allclose(mean, torch.tensor(0.5).lerp(lengths.mean(), 0.1))
    assert torch.allclose(penalty, (lengths - mean).square())
    penalty.sum().backward()  # differentiable: the generator learns from it
    assert w.grad is not None


def test_g_ema_ramps_up_like_the_release():
    assert stylegan_ema_beta(0, 32, ema_kimg=10) == 0.0  # the first step copies G
    assert stylegan_ema_beta(10_000, 32, ema_kimg=10) == pytest.approx(0.5 ** (32 / 500))
    assert stylegan_ema_beta(10_000_000, 32, ema_kimg=10) == pytest.approx(0.5 ** (32 / 10_000))
    assert stylegan_ema_beta(10_000, 32, ema_kimg=10, rampup=None) == pytest.approx(0.5 ** (32 / 10_000))


def _one_step(preset: str, step: int, augment: str = "ada", cfg: str | None = None) -> tuple[dict, object]:
    """The recipe's train_step once, outside the loop (the loop itself is tested in tests/utils/gan)."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    from models.gan.stylegan3.training import recipe
    from utils.gan.recipe import StepContext

    torch.manual_seed(0)
    r = recipe(preset, cfg=cfg)
    opt_g = torch.optim.Adam(r.generator.parameters(), lr=r.lr_g, betas=r.betas)
    opt_d = torch.optim.Adam(r.discriminator.parameters(), lr=r.lr_d, betas=r.betas)
    batch = {"image": torch.rand(4, 1, 32, 32) * 2 - 1, "label": None}
    settings = SimpleNamespace(lr_g=r.lr_g, lr_d=r.lr_d, betas=r.betas, r1_weight=r.r1_weight, augment=augment,
                               ada_target=0.6, batch_size=4)
    ctx = StepContext(step=step, generator=torch.Generator().manual_seed(step), G=r.generator, D=r.discriminator,
                      opt_g=opt_g, opt_d=opt_d, accelerator=Accelerator(cpu=True), settings=settings,
                      next_batch=lambda: batch, device=torch.device("cpu"))
    return r.train_step(ctx), r


def test_one_step_runs_nvlabs_phases():
    log, r = _one_step("tiny", step=1)  # StyleGAN3-T, ADA on, no lazy step due
    assert {"loss_g", "loss_d", "ada_p"} <= set(log) and not {"r1", "pl_penalty"} & set(log)
    assert all(math.isfinite(v) for v in log.values())
    assert r.discriminator.augment.sign_count.item() == 4  # D's outputs on the reals went to ADA's statistics
    assert r.generator.mapping.w_avg.abs().sum() > 0  # NVlabs' update_emas in the D phase moved w_avg
    log, r = _one_step("tiny-stylegan2", step=4, augment="")  # StyleGAN2 at a path length step
    assert "pl_penalty" in log and "r1" not in log and "ada_p" not in log and r.discriminator.pl_mean.item() > 0


@pytest.mark.slow
def test_the_first_step_runs_lazy_r1_through_ada():
    log, r = _one_step("tiny", step=0)
    assert "r1" in log and math.isfinite(log["r1"]) and r.discriminator.augment.sign_count.item() == 8


@pytest.mark.slow
def test_a_tiny_stylegan3_trains_and_its_weights_generate(tmp_path):
    s = _train(tmp_path, "--steps", "2", "--aug", "ada")
    first = s["history"][0]
    assert {"loss_g", "loss_d", "r1", "ada_p"} <= set(first)  # step 0: the lazy R1 step ran
    assert "r1" not in s["history"][1] and "pl_penalty" not in first  # StyleGAN3: no path length
    assert all(math.isfinite(v) for h in s["history"] for v in h.values())
    from models.gan.stylegan3.pipeline import StyleGANPipeline

    pipe = StyleGANPipeline.from_pretrained(s["generator"], device="cpu")
    assert pipe.config.architecture == "stylegan3-t"
    assert pipe(num_images=2, seed=0).pixels.shape == (2, 3, 32, 32)


@pytest.mark.slow
def test_stylegan2_and_r_configs_train_with_their_regularisers(tmp_path):
    s = _train(tmp_path / "sg2", "--cfg", "stylegan2", "--steps", "5", "--aug", "ada", "--mirror")
    hist = s["history"]
    assert "pl_penalty" in hist[0] and "pl_penalty" in hist[4] and "pl_penalty" not in hist[1]  # lazy, every 4
    assert "ada_rt" in hist[3]
    s = _train(tmp_path / "r", "--cfg", "stylegan3-r", "--steps", "1", "--aug", "noaug")
    assert s["history"][0]["blur_sigma"] == 10.0 and "ada_p" not in s["history"][0]


@pytest.mark.slow
def test_resume_is_bit_exact_with_path_length_and_ada_state(tmp_path):
    from utils.training.checkpoints import load_checkpoint

    extra = ("--cfg", "stylegan2", "--aug", "ada", "--steps", "5")
    full = _train(tmp_path / "full", *extra)
    _train(tmp_path / "cut", "--cfg", "stylegan2", "--aug", "ada", "--steps", "2")
    resumed = _train(tmp_path / "cut", *extra, "--resume", "auto")
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "step_0000005.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "step_0000005.pt")
    for part in ("generator", "discriminator", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert float(b["discriminator"]["pl_mean"]) != 0.0  # the path length mean was carried over
    assert [h["loss_g"] for h in full["history"][2:]] == [h["loss_g"] for h in resumed["history"]]


def test_command_line_mistakes_are_one_line(tmp_path, capsys):
    from train.train_gan import main

    for argv, message in ((["--model", "dcgan", "--cfg", "stylegan2"], "dcgan has no --cfg"),
                          (["--model", "stylegan3", "--preset", "tiny", "--cfg", "stylegan4"], "--cfg must be"),
                          (["--model", "stylegan3", "--aug", "ada", "--augment", "color"], "not both"),
                          (["--model", "stylegan3", "--kimg", "1", "--steps", "3"], "not both"),
                          (["--model", "stylegan3", "--target", "1.5"], "in (0, 1)")):
        with pytest.raises(SystemExit) as exc:
            main(["--out", str(tmp_path / "o"), "--cpu", *argv])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and message in err, err


def test_kimg_sets_the_steps_and_mirror_doubles_the_data():
    from train.train_gan import parse_args, settings_from
    from utils.gan.mirror import MirroredDataset

    s, recipe = settings_from(parse_args(["--model", "stylegan3", "--preset", "tiny", "--kimg", "1", "--batch", "16",
                                          "--gamma", "0.2", "--mirror", "--aug", "noaug", "--target", "0.5"]))
    assert (s.steps, s.batch_size, s.r1_weight, s.mirror, s.augment, s.ada_target) == (63, 16, 0.2, True, "", 0.5)
    data = MirroredDataset([{"image": torch.arange(6.0).reshape(1, 2, 3), "label": 1}])
    assert len(data) == 2 and torch.equal(data[1]["image"], data[0]["image"].flip(-1)) and data[1]["label"] == 1
    with torch.device("meta"):  # the 512 px networks are built, never allocated
        paper = settings_from(parse_args(["--model", "stylegan3", "--preset", "stylegan3-t-afhqv2-512"]))[0]
    assert (paper.r1_weight, paper.batch_size, paper.lr_g, paper.lr_d, paper.augment) == (8.2, 32, 0.0025, 0.002, "ada")

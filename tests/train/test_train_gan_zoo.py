"""train_gan.py with the zoo's own recipes: WGAN-GP in the built-in loop, ProGAN's growing schedule and
CycleGAN's two-generator step through the step hook, linear learning-rate decay, exact resume."""
from __future__ import annotations

from pathlib import Path

import torch

from utils.training import load_checkpoint
from utils.weights import flatten_tensors
from train.train_gan import parse_args, train
from utils.gan.trainer import lr_factor


def _run(out: Path, model: str, steps: int, *extra: str) -> dict:
    args = parse_args(["--model", model, "--preset", "tiny", "--steps", str(steps), "--out", str(out),
                       "--ckpt-every", "2", "--sample-every", "1000", "--keep", "10", "--no-progress", "--cpu", *extra])
    return train(args)


def _mean(hist: list[dict], key: str, part: slice) -> float:
    vals = [h[key] for h in hist[part]]
    return sum(vals) / len(vals)


def test_wgan_gp_critic_learns(tmp_path):
    """n_critic 5 critic steps with the penalty per generator step; the critic's loss (minus the estimated
    Wasserstein distance) falls as it learns to separate real digits from the generator's samples."""
    torch.manual_seed(0)
    s = _run(tmp_path, "wgan_gp", 8, "--dataset", "digits", "--batch-size", "16")
    hist = s["history"]
    assert all("gp" in h for h in hist)
    assert _mean(hist, "loss_d", slice(-3, None)) < _mean(hist, "loss_d", slice(0, 3)), hist
    assert hist[-1]["loss_d"] < hist[0]["loss_d"] < 0.1
    state = load_checkpoint(tmp_path / "checkpoints" / "step_0000008.pt")
    assert '"n_critic": 5' in state["settings"] and '"gp_weight": 10.0' in state["settings"]


def test_progressive_gan_grows_and_its_critic_learns(tmp_path):
    s = _run(tmp_path, "progressive_gan", 24, "--dataset", "digits", "--batch-size", "16")
    hist = s["history"]
    stage0 = [h for h in hist if h["depth"] == 0]
    assert len(stage0) == 12 and hist[-1]["depth"] == 1 and hist[-1]["alpha"] == 1.0
    fading = [h["alpha"] for h in hist if h["depth"] == 1 and h["alpha"] < 1]
    assert fading == sorted(fading) and len(fading) >= 3  # alpha rises through the fade-in
    assert _mean(stage0, "loss_d", slice(-3, None)) < _mean(stage0, "loss_d", slice(0, 3))
    from models.gan.progressive_gan import ProgressiveGANPipeline

    pipe = ProgressiveGANPipeline.from_pretrained(s["generator"])
    assert pipe(num_images=2, seed=0).images[0].size == (8, 8)
    assert (tmp_path / "samples" / "step_0000024.png").exists()


def test_cyclegan_cycle_and_discriminator_losses_drop(tmp_path):
    full = _run(tmp_path / "full", "cyclegan", 10, "--dataset", "digits-ink", "--batch-size", "2",
                "--lr-decay-start", "5")
    hist = full["history"]
    assert _mean(hist, "cycle", slice(-3, None)) < _mean(hist, "cycle", slice(0, 3))
    assert _mean(hist, "loss_d", slice(-3, None)) < _mean(hist, "loss_d", slice(0, 3))
    assert [h["lr_factor"] for h in hist[4:7]] == [1.0, 1 - 1 / 6, 1 - 2 / 6]  # steps 5, 6, 7 of 10
    from models.gan.cyclegan import CycleGANPipeline

    pipe = CycleGANPipeline.from_pretrained(full["generator"], direction="BtoA")
    assert pipe(image=torch.zeros(3, 32, 32)).images[0].size == (32, 32)
    assert (tmp_path / "full" / "samples" / "step_0000010.png").exists()


def test_cyclegan_resume_is_exact_with_pools_and_lr_decay(tmp_path):
    """The image pools travel in the discriminators' buffers; the decay is a function of the step."""
    opts = ("--dataset", "digits-ink", "--batch-size", "2", "--lr-decay-start", "4")
    _run(tmp_path / "part", "cyclegan", 4, *opts)
    a = _run(tmp_path / "full", "cyclegan", 6, *opts)
    b = _run(tmp_path / "part", "cyclegan", 6, *opts, "--resume", "auto")
    assert a["history"][4:] == b["history"] and b["history"][-1]["lr_factor"] < 1
    ca = load_checkpoint(tmp_path / "full" / "checkpoints" / "step_0000006.pt")
    cb = load_checkpoint(tmp_path / "part" / "checkpoints" / "step_0000006.pt")
    for part in ("generator", "discriminator", "opt_g", "opt_d"):
        flat_a, flat_b = flatten_tensors(ca[part]), flatten_tensors(cb[part])
        assert flat_a.keys() == flat_b.keys() and all(torch.equal(flat_a[k], flat_b[k]) for k in flat_a), part
    assert int(ca["discriminator"]["pool_fake_b.count"]) == 12


def test_lr_factor_is_the_original_linear_rule():
    # CycleGAN's lambda_rule with epochs as steps, stepped after each epoch as its train.py does: the 0-based
    # epoch e trains at 1 - max(0, e + epoch_count - n_epochs) / (n_epochs_decay + 1), epoch_count = 1.
    # 100 epochs at the full rate, then 100 that decay towards 0 (the paper's schedule).
    steps, start = 200, 100
    assert [lr_factor(s, start, steps) for s in (0, 98, 99)] == [1.0, 1.0, 1.0]
    assert lr_factor(100, start, steps) == 1 - 1 / 101
    assert lr_factor(150, start, steps) == 1 - 51 / 101 and lr_factor(199, start, steps) == 1 - 100 / 101
    assert lr_factor(5, 0, steps) == 1.0

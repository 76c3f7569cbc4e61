"""GANTrainer on a toy GAN (4x4 grey images, MLPs): exact resume, the step hook's batches, the folder rules,
and the loop's helpers."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from utils.errors import UserError
from utils.gan.recipe import GANRecipe, StepContext
from utils.gan.trainer import GANTrainer, Settings, StepBatches, TrainerOptions, collate, lr_factor, match_channels
from utils.training import load_checkpoint
from utils.weights import flatten_tensors


@dataclass(frozen=True)
class ToyConfig:
    image_size: int = 4
    """Side of the images."""
    channels: int = 1
    """Grey images."""
    latent_dim: int = 3
    """Size of z."""


class ToyGenerator(nn.Module):
    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.net = nn.Sequential(nn.Linear(config.latent_dim, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 16))

    @property
    def latent_shape(self) -> tuple[int]:
        return (self.config.latent_dim,)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.tanh(self.net(z)).view(-1, 1, 4, 4)


class ToyDiscriminator(nn.Module):
    def __init__(self, config: ToyConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x.flatten(1))[:, 0]


class ToyImages(torch.utils.data.Dataset):
    """20 fixed images; item i is recognisable by its mean (i / 20)."""

    def __len__(self) -> int:
        return 20

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.full((1, 4, 4), i / 20.0), "label": None}


def toy_recipe(train_step=None) -> GANRecipe:
    config = ToyConfig()
    return GANRecipe(ToyGenerator(config), ToyDiscriminator(config), config, make_dataset=lambda name: ToyImages(),
                     train_step=train_step)


def settings(**changes) -> Settings:
    base = dict(model="toy", preset="toy", dataset="toy", steps=4, batch_size=4, lr_g=1e-3, lr_d=1e-3,
                betas=(0.5, 0.999), loss="non_saturating", n_critic=2, gp_weight=0.0, r1_weight=1.0,
                ema_beta=0.9, augment="ada", spectral_norm=False, mixed_precision="no", seed=3)
    return Settings(**{**base, **changes})


def train(out: Path, train_step=None, resume: str | None = None, **changes) -> dict:
    options = TrainerOptions(out=out, resume=resume, log_every=1, sample_every=100, ckpt_every=2, keep=5, cpu=True,
                             progress=False)
    return GANTrainer(settings(**changes), lambda: toy_recipe(train_step), options).run()


def assert_same_state(a: Path, b: Path, parts: tuple[str, ...]) -> None:
    sa, sb = load_checkpoint(a), load_checkpoint(b)
    for part in parts:
        ta, tb = flatten_tensors(sa[part]), flatten_tensors(sb[part])
        assert ta and ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), part


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> dict:
    """4 steps without interruption (built-in step: 2 D updates with R1 and ADA, EMA)."""
    return train(tmp_path_factory.mktemp("full"))


def test_resume_repeats_the_uninterrupted_run(full_run, tmp_path):
    full = Path(full_run["out"])
    resumed = train(tmp_path, resume=str(full / "checkpoints" / "step_0000002.pt"))
    assert resumed["history"] == full_run["history"][2:]
    assert_same_state(full / "checkpoints" / "step_0000004.pt", tmp_path / "checkpoints" / "step_0000004.pt",
                      ("generator", "discriminator", "ema", "opt_g", "opt_d"))
    assert load_checkpoint(tmp_path / "checkpoints" / "step_0000004.pt")["ada"] == \
        load_checkpoint(full / "checkpoints" / "step_0000004.pt")["ada"]
    # and the run is not trivially constant: the losses and the weights moved
    assert len({h["loss_d"] for h in full_run["history"]}) == 4
    first = load_checkpoint(full / "checkpoints" / "step_0000002.pt")["generator"]
    last = load_checkpoint(full / "checkpoints" / "step_0000004.pt")["generator"]
    assert not torch.equal(first["net.0.weight"], last["net.0.weight"])


def test_another_seed_gives_another_run(full_run, tmp_path):
    other = train(tmp_path, seed=4)
    assert other["history"][0]["loss_d"] != full_run["history"][0]["loss_d"]


def _reads_one_batch(ctx: StepContext) -> dict[str, float]:
    """A hook that reads one batch per step whatever n_critic says (as VQGAN's and CycleGAN's do)."""
    batch = ctx.next_batch()
    return {"loss_d": float(batch["image"].mean()), "loss_g": float(batch["image"][:, 0, 0, 0].sum())}


def test_a_hook_that_reads_fewer_batches_than_n_critic_still_resumes_exactly(tmp_path):
    full = train(tmp_path / "full", train_step=_reads_one_batch, n_critic=3)
    resumed = train(tmp_path / "resumed", train_step=_reads_one_batch, n_critic=3,
                    resume=str(tmp_path / "full" / "checkpoints" / "step_0000002.pt"))
    assert resumed["history"] == full["history"][2:]
    # step t reads batch t * n_critic of the seeded order
    from utils.training.seeding import epoch_indices

    means = [h["loss_d"] for h in full["history"]]
    expected = [float(epoch_indices(20, 4, 3 * t, 3).double().mean() / 20) for t in range(4)]
    assert means == pytest.approx(expected, abs=1e-6)


def test_a_hook_that_reads_more_batches_than_n_critic_is_refused(tmp_path):
    def greedy(ctx: StepContext) -> dict[str, float]:
        ctx.next_batch()
        ctx.next_batch()
        return {"loss_d": 0.0, "loss_g": 0.0}

    with pytest.raises(RuntimeError, match="n_critic"):
        train(tmp_path, train_step=greedy, n_critic=1)


def test_resume_keeps_the_log_to_the_checkpoint(full_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(full_run["out"], out)
    train(out, resume=str(out / "checkpoints" / "step_0000002.pt"))
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


@pytest.mark.parametrize("change, flag", [({"seed": 5}, "--seed 3"), ({"batch_size": 2}, "--batch-size 4"),
                                          ({"n_critic": 1}, "--n-critic 2")])
def test_resume_refuses_settings_that_change_the_numbers(full_run, tmp_path, change, flag):
    ckpt = Path(full_run["out"]) / "checkpoints" / "step_0000002.pt"
    with pytest.raises(UserError, match=flag):
        train(tmp_path, resume=str(ckpt), **change)
    # the number of steps may grow: training continues
    assert len(train(tmp_path / "longer", resume=str(ckpt), steps=5)["history"]) == 3


def test_resume_with_ema_or_ada_the_run_did_not_have_is_refused(tmp_path):
    train(tmp_path / "plain", ema_beta=0.0, augment="")
    ckpt = str(tmp_path / "plain" / "checkpoints" / "step_0000002.pt")
    with pytest.raises(UserError, match="without EMA: pass --ema 0"):
        train(tmp_path / "a", resume=ckpt, augment="")
    with pytest.raises(UserError, match="without ADA"):
        train(tmp_path / "b", resume=ckpt, ema_beta=0.0)
    assert train(tmp_path / "c", resume=ckpt, ema_beta=0.0, augment="")["history"]


def test_a_fresh_run_refuses_a_folder_that_holds_checkpoints(full_run):
    with pytest.raises(UserError, match="--resume auto"):
        train(Path(full_run["out"]))


def test_resume_refuses_another_model(full_run, tmp_path):
    with pytest.raises(UserError, match="belongs to toy"):
        train(tmp_path, resume=str(Path(full_run["out"]) / "checkpoints" / "step_0000002.pt"), model="other")


def test_bad_counts_are_refused_before_any_work(tmp_path):
    with pytest.raises(UserError, match="at least 1"):
        GANTrainer(settings(steps=0), toy_recipe, TrainerOptions(out=tmp_path))
    assert not tmp_path.joinpath("checkpoints").exists()


# -- helpers of the loop -------------------------------------------------------------------------


def test_step_batches_are_the_seeded_order_from_any_start():
    from utils.training.seeding import epoch_indices

    sampler = StepBatches(20, 4, seed=1, start=3, stop=7, rank=0, world=1)
    batches = list(sampler)
    assert len(sampler) == 4 and batches == [epoch_indices(20, 4, i, 1).tolist() for i in range(3, 7)]
    with pytest.raises(UserError, match="fewer than one batch"):
        StepBatches(5, 4, seed=0, start=0, stop=1, rank=0, world=2)


def test_lr_factor_is_constant_then_linear_to_zero():
    assert lr_factor(10, 0, 100) == 1.0
    assert [lr_factor(t, 50, 100) for t in (0, 48, 49)] == [1.0, 1.0, 1.0]
    # as CycleGAN's lambda_rule over 50 + 50 epochs: the first decayed epoch at 50/51, the last at 1/51
    tail = [lr_factor(t, 50, 100) for t in range(50, 100)]
    assert tail == pytest.approx([1 - k / 51 for k in range(1, 51)])


def test_match_channels():
    grey = torch.rand(2, 1, 3, 3)
    rgb = match_channels(grey, 3)
    assert rgb.shape == (2, 3, 3, 3) and all(torch.equal(rgb[:, c], grey[:, 0]) for c in range(3))
    colour = torch.rand(2, 3, 3, 3)
    assert torch.allclose(match_channels(colour, 1)[:, 0], colour.mean(1))
    assert match_channels(colour, 3) is colour
    with pytest.raises(UserError, match="2 channels"):
        match_channels(torch.rand(1, 2, 3, 3), 3)


def test_collate_batches_labels_and_extra_images():
    items = [{"image": torch.zeros(1, 2, 2), "label": 1, "image_b": torch.ones(1, 2, 2)},
             {"image": torch.ones(1, 2, 2), "label": 0, "image_b": torch.zeros(1, 2, 2)}]
    batch = collate(items)
    assert batch["image"].shape == (2, 1, 2, 2) and batch["label"].tolist() == [1, 0]
    assert torch.equal(batch["image_b"][:, 0, 0, 0], torch.tensor([1.0, 0.0]))
    assert collate([{"image": torch.zeros(1, 2, 2), "label": None}])["label"] is None

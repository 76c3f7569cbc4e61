"""FID / IS during GAN training into TensorBoard at the expected steps, cached reference statistics,
the W&B switch, and the curves PNG."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from torch import nn

import utils.gan.metrics_hook as hook
from train.train_gan import main as train_main
from train.plot_curves import main as plot_main


class TinyInception(nn.Module):
    """Stands in for the Inception network: pool features and class logits of a small random net."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 16, 3, 2, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return torch.relu(self.conv(x)).mean((2, 3))

    def logits(self, x, bias=False):
        return self.fc(self(x))


@pytest.fixture
def tiny_inception(monkeypatch, tmp_path):
    from utils.metrics.fid import FeatureExtractor

    built = []

    def build(weights, device, need_logits):
        built.append(need_logits)
        return FeatureExtractor(model=TinyInception(), device="cpu", batch_size=16, progress=False, num_workers=1)

    monkeypatch.setattr(hook, "build_extractor", build)
    monkeypatch.setenv("CV_GENERATIVE_STATS", str(tmp_path / "stats"))
    return built


def scalars(run, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


ARGS = ["--model", "dcgan", "--preset", "tiny", "--dataset", "digits", "--steps", "10", "--batch-size", "8",
        "--no-progress", "--cpu", "--log-every", "5", "--sample-every", "5", "--ckpt-every", "10"]


@pytest.fixture
def fake_wandb(monkeypatch):
    import sys
    import types

    logged = []
    import importlib.machinery

    fake = types.ModuleType("wandb")
    fake.__spec__ = importlib.machinery.ModuleSpec("wandb", None)

    class Run:
        def log(self, values, step=None):
            logged.append((step, dict(values)))

        def finish(self):
            logged.append(("finished", {}))

    fake.init = lambda project=None, **kw: Run()
    fake.config = types.SimpleNamespace(update=lambda values, allow_val_change=True: None)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    return logged


def test_fid_and_is_reach_tensorboard_wandb_and_the_curves_png(tiny_inception, fake_wandb, tmp_path, capsys):
    run = tmp_path / "run"
    train_main(ARGS + ["--out", str(run), "--metrics", "fid,is", "--metrics-every", "5", "--metrics-samples", "12",
                       "--wandb"])
    fid = scalars(run, "metrics/fid")
    assert [s for s, _ in fid] == [5, 10]
    assert all(v > 0 for _, v in fid)
    assert [s for s, _ in scalars(run, "metrics/is")] == [5, 10]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10] and all(1.0 <= r["is"] <= 10.0 for r in rows)
    assert len(list((tmp_path / "stats").glob("*.npz"))) == 1  # the dataset's statistics, cached
    assert [s for s, _ in fake_wandb] == [5, 10, "finished"]
    assert "metrics/fid" in fake_wandb[1][1] and "train/loss_d" in fake_wandb[0][1]

    capsys.readouterr()
    plot_main([str(run)])
    png = run / "curves.png"
    assert capsys.readouterr().out.strip() == str(png)
    img = Image.open(png)
    assert img.width == 840 and img.height > 2 * 260  # two panels a row: losses, FID, IS, then the sample grid
    colours = {c for _, c in img.convert("RGB").getcolors(1 << 20)}
    assert (31, 119, 180) in colours and (214, 39, 40) in colours  # the D and G loss lines were drawn


@pytest.mark.slow
def test_a_second_run_reuses_the_cached_reference_statistics(tiny_inception, tmp_path, monkeypatch):
    train_main(ARGS + ["--out", str(tmp_path / "one"), "--metrics", "fid", "--metrics-every", "10",
                       "--metrics-samples", "12"])
    calls = []
    real = hook.TrainingMetrics.reference

    def counting(self):
        calls.append(self.reference_path().is_file())
        return real(self)

    monkeypatch.setattr(hook.TrainingMetrics, "reference", counting)
    train_main(ARGS + ["--out", str(tmp_path / "two"), "--metrics", "fid", "--metrics-every", "10",
                       "--metrics-samples", "12"])
    assert calls == [True]
    assert [s for s, _ in scalars(tmp_path / "two", "metrics/fid")] == [10]
    assert scalars(tmp_path / "two", "metrics/is") == []


def test_dashboard_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        train_main(ARGS + ["--out", str(tmp_path / "a"), "--metrics", "fid,kid"])
    assert err.value.code == 2 and "unknown --metrics 'kid'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        train_main(ARGS + ["--out", str(tmp_path / "b"), "--wandb"])
    assert err.value.code == 2 and "pip install wandb" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        plot_main([str(tmp_path / "missing")])
    assert err.value.code == 2 and "run folder not found" in capsys.readouterr().err


@pytest.mark.slow
def test_fid_with_the_real_inception_network_from_a_weights_file(tmp_path, monkeypatch):
    """The full path, no stand-in: pytorch-fid's Inception layout (random weights) read from --metrics-weights."""
    from utils.metrics.inception import FIDInceptionV3

    monkeypatch.setenv("CV_GENERATIVE_STATS", str(tmp_path / "stats"))
    torch.manual_seed(0)
    torch.save(FIDInceptionV3().state_dict(), tmp_path / "inception.pth")
    run = tmp_path / "run"
    train_main(ARGS + ["--out", str(run), "--metrics", "fid,is", "--metrics-every", "10", "--metrics-samples", "4",
                       "--metrics-weights", str(tmp_path / "inception.pth")])
    fid = scalars(run, "metrics/fid")
    assert [s for s, _ in fid] == [10] and fid[0][1] >= 0
    assert [s for s, _ in scalars(run, "metrics/is")] == [10]
    assert len(list((tmp_path / "stats").glob("*.npz"))) == 1

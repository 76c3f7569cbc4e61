"""train_gan.py: losses move the right way, checkpoints are safe and resume bit-exactly, errors are one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from utils.training import load_checkpoint
from utils.weights import flatten_tensors
from utils.gan.losses import get_loss
from train.train_gan import parse_args, train

ROOT = Path(__file__).resolve().parents[2]


def _run(out: Path, steps: int, *extra: str) -> dict:
    args = parse_args(["--model", "dcgan", "--preset", "tiny", "--dataset", "digits", "--steps", str(steps),
                       "--batch-size", "32", "--out", str(out), "--ckpt-every", "3", "--sample-every", "3",
                       "--keep", "10", "--no-progress", "--cpu", *extra])
    return train(args)


def test_training_lowers_losses_and_writes_outputs(tmp_path):
    torch.manual_seed(0)
    from models.gan.dcgan.training import recipe

    summary = _run(tmp_path, 30)
    hist = summary["history"]
    first_d = sum(h["loss_d"] for h in hist[:3]) / 3
    last_d = sum(h["loss_d"] for h in hist[-3:]) / 3
    assert last_d < first_d, (first_d, last_d)  # the discriminator learns to separate real from fake

    # against the final discriminator, the trained generator scores better than its initialisation
    state = load_checkpoint(tmp_path / "checkpoints" / "step_0000030.pt")
    torch.manual_seed(0)  # the seed train() used, so this is the generator's starting point
    r = recipe("tiny")
    g0, d = r.generator.eval(), r.discriminator.eval()
    g1 = recipe("tiny").generator.eval()
    g1.load_state_dict(state["generator"])
    d.load_state_dict(state["discriminator"])
    z = torch.randn(256, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        loss = get_loss("non_saturating").g_loss
        assert loss(d(g1(z))) < loss(d(g0(z)))

    assert (tmp_path / "samples" / "step_0000030.png").exists()
    assert any((tmp_path / "tb").iterdir())
    assert Path(summary["generator"]).name == "generator.safetensors"
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == 30 and json.loads(lines[-1])["step"] == 30


def test_resume_is_bit_exact(tmp_path):
    full = _run(tmp_path / "full", 6)
    _run(tmp_path / "part", 3)
    resumed = _run(tmp_path / "part", 6, "--resume", "auto")
    assert [h for h in full["history"][3:]] == resumed["history"]
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "step_0000006.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoints" / "step_0000006.pt")
    for part in ("generator", "discriminator", "ema", "opt_g"):
        flat_a, flat_b = flatten_tensors(a[part]), flatten_tensors(b[part])
        assert flat_a.keys() == flat_b.keys()
        assert all(torch.equal(flat_a[k], flat_b[k]) for k in flat_a), part


def test_checkpoints_load_with_weights_only(tmp_path):
    _run(tmp_path, 3)
    ckpt = tmp_path / "checkpoints" / "step_0000003.pt"
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 3 and json.loads(state["settings"])["model"] == "dcgan"
    assert not list((tmp_path / "checkpoints").glob("*.tmp*"))


def test_toolkit_options_run_together(tmp_path):
    """WGAN-GP critic steps, R1, ADA, spectral norm and hinge loss all pass through the one loop."""
    s = _run(tmp_path / "a", 2, "--loss", "wasserstein", "--n-critic", "2", "--gp-weight", "10", "--augment", "ada")
    assert "gp" in s["history"][-1] and "ada_p" in s["history"][-1]
    s = _run(tmp_path / "b", 2, "--loss", "hinge", "--r1-weight", "1", "--spectral-norm",
             "--augment", "color,translation")
    assert "r1" in s["history"][-1]


@pytest.mark.parametrize("argv, message", [
    (["--model", "dcgn"], "did you mean: dcgan"),
    (["--preset", "huge"], "no preset 'huge'"),
    (["--dataset", "/no/such/folder"], "/no/such/folder"),
    (["--resume", "/no/such.pt"], "checkpoint not found"),
    (["--steps", "zero"], "invalid int value"),
])
def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys, argv, message):
    from train.train_gan import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "o" / "generator.safetensors").exists()


def test_cli_refuses_to_mix_two_runs_in_one_folder(tmp_path, capsys):
    """A fresh run into a folder with checkpoints, or a resume with another seed, would not continue the
    run the checkpoints belong to: one line, exit 2, and the folder is left as it was."""
    from train.train_gan import main

    _run(tmp_path, 3)
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    argv = ["--model", "dcgan", "--preset", "tiny", "--steps", "6", "--batch-size", "32", "--out", str(tmp_path),
            "--no-progress", "--cpu"]
    for extra, message in (([], "--resume auto"), (["--resume", "auto", "--seed", "1"], "--seed 0")):
        with pytest.raises(SystemExit) as exc:
            main(argv + extra)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 3


def test_script_runs_as_a_user_types_it(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "train" / "train_gan.py"), "--help"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert res.returncode == 0 and "--resume" in res.stdout and "--mixed-precision" in res.stdout


@pytest.mark.slow
def test_accelerate_launch_two_processes(tmp_path):
    """The same script under `accelerate launch` with 2 CPU processes (DDP over gloo)."""
    res = subprocess.run(["accelerate", "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "train" / "train_gan.py"),
                          "--preset", "tiny", "--steps", "4", "--batch-size", "16", "--out", str(tmp_path),
                          "--ckpt-every", "2", "--no-progress"], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    state = load_checkpoint(tmp_path / "checkpoints" / "step_0000004.pt")
    assert state["step"] == 4
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 4  # only the main process logs

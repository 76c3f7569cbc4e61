"""train/train_3d.py and the Gaussian-splatting trainer: a short run learns, resume is exact,
user mistakes exit with code 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from models.generation_3d.gaussian_splatting.config import TrainConfig, get_config
from models.generation_3d.gaussian_splatting.strategy import make_strategy
from models.generation_3d.gaussian_splatting.training import Trainer
from utils.data.nerf_synthetic import load_nerf_synthetic
from utils.data.synthetic_scene import ensure_synthetic_scene

REPO = Path(__file__).resolve().parents[2]
# The CPU rasterizer runs many small ops; on a shared machine two threads waiting on each other
# cost more than they gain, so these runs use one (subprocesses too).
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return ensure_synthetic_scene(tmp_path_factory.mktemp("scene") / "s", n_train=12, n_test=3, size=32)


def _trainer(scene, out, steps, strategy="default", n=800):
    cfg = replace(get_config("tiny"), init_num_points=n)
    return Trainer(cfg, TrainConfig(seed=0).scaled_to(steps), make_strategy(strategy, steps, **(
        {"max_gaussians": 4000} if strategy == "default" else {"cap_max": 4000})),
        load_nerf_synthetic(scene, "train"), load_nerf_synthetic(scene, "test"), out, torch.device("cpu"),
        tensorboard=False)


@pytest.mark.parametrize("strategy", ["default", "mcmc"])
def test_short_run_learns(scene, tmp_path, strategy):
    t = _trainer(scene, tmp_path, 120, strategy)
    before = t.evaluate()["psnr"]
    hist = t.fit(progress=False, log_every=1)["history"]
    first, last = hist[:15], hist[-15:]
    assert sum(h["loss"] for h in last) < 0.6 * sum(h["loss"] for h in first)
    after = t.evaluate()["psnr"]
    assert after > before + 5, (before, after)
    if strategy == "mcmc":
        assert len(t.model) > 800  # grew towards the cap


def test_resume_is_exact(scene, tmp_path):
    # 16 steps with refinement every 25 scaled away: shrink the schedule so densification and an
    # opacity reset happen on both sides of the interruption
    def make(out):
        t = _trainer(scene, out, 16, n=300)
        t.strategy = replace(t.strategy, refine_start=3, refine_every=4, reset_every=10)
        return t

    straight = make(tmp_path / "a")
    straight.save_every = 1000
    straight.fit(progress=False)
    first = make(tmp_path / "b")
    first.save_every = 8
    first.fit(progress=False)
    # as if the run had died after step 8
    (tmp_path / "b" / "ckpts" / "step_0000016.pt").unlink()
    resumed = make(tmp_path / "b")
    resumed.fit(resume=True, progress=False)
    assert resumed.step == 16 and len(resumed.model) != 300
    for k, v in straight.model.splats.items():
        assert torch.equal(v, resumed.model.splats[k]), k


def test_cli_end_to_end(scene, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "train/train_3d.py", "--model", "gaussian_splatting", "--data", str(scene), "--steps", "10",
           "--out", str(out), "--no-progress", "--turntable-frames", "4", "--no-tensorboard", "--preset", "tiny",
           "--device", "cpu"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=ONE_THREAD_ENV)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"psnr", "ssim", "lpips"} <= set(metrics) and metrics["split"] == "test"
    assert metrics["lpips"] is not None or "lpips_note" in metrics
    assert (out / "point_cloud.ply").is_file() and (out / "turntable.mp4").stat().st_size > 0
    assert len(list((out / "test_renders").glob("*.png"))) == 3
    assert (out / "ckpts" / "step_0000010.pt").is_file()
    r = subprocess.run(cmd[:cmd.index("--steps") + 1] + ["14"] + cmd[cmd.index("--steps") + 2:] + ["--resume"],
                       cwd=REPO, capture_output=True, text=True, timeout=300, env=ONE_THREAD_ENV)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "metrics.json").read_text())["steps"] == 14
    # the trained splats render through the inference CLI
    r = subprocess.run([sys.executable, "inference/generate_3d.py", "--ply", str(out / "point_cloud.ply"), "--frames",
                        "2", "--size", "16", "--out", str(tmp_path / "views")], cwd=REPO, capture_output=True,
                       text=True, timeout=300, env=ONE_THREAD_ENV)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "views" / "turntable.mp4").is_file() and len(list((tmp_path / "views" / "renders").glob("*.png"))) == 2


def test_progress_bar_shows_steps_per_second_and_time_left(scene, tmp_path, capsys):
    t = _trainer(scene, tmp_path, 3, n=100)
    t.fit(progress=True)
    err = capsys.readouterr().err
    assert "step/s" in err and " left" in err and "3/3" in err


def test_cli_fits_a_cpu_time_budget_and_resumes_its_plan(scene, tmp_path):
    # --data on CPU without --steps: the schedule is measured and fitted to the budget
    out = tmp_path / "budget"
    cmd = [sys.executable, "train/train_3d.py", "--model", "gaussian_splatting", "--data", str(scene),
           "--time-budget", "0.05", "--out", str(out), "--no-progress", "--turntable-frames", "0", "--no-tensorboard",
           "--device", "cpu", "--antialiased"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=ONE_THREAD_ENV)
    assert r.returncode == 0, r.stderr
    assert "3-minute" not in r.stderr and "0.05-minute budget" in r.stderr and "ms/step at" in r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    plan = metrics["time_budget"]
    assert plan["budget_min"] == 0.05 and metrics["backend"] == "numba" and metrics["antialiased"] is True
    # the number of steps is what the measured speed buys: budget / expected time per step
    per_step = 0.25 * plan["ms_per_step_init"] + 0.75 * plan["ms_per_step"]
    assert metrics["steps"] == min(30_000, int(3000 / per_step))
    assert metrics["n_gaussians"] <= 5_000  # the cap of a 32x32 scene
    # a resume continues the same schedule instead of measuring again
    for ckpt in sorted((out / "ckpts").glob("step_*.pt"))[1:]:
        ckpt.unlink()
    r = subprocess.run(cmd + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=600, env=ONE_THREAD_ENV)
    assert r.returncode == 0, r.stderr
    assert "budget" not in r.stderr.split("training gaussian_splatting")[0]
    assert json.loads((out / "metrics.json").read_text())["steps"] == metrics["steps"]


@pytest.mark.parametrize("args, message", [
    (["--model", "gaussian_splating"], "did you mean"),
    (["--model", "gaussian_splatting", "--data", "/nonexistent/scene"], "not found"),
    (["--model", "gaussian_splatting", "--time-budget", "0"], "--time-budget must be a positive"),
    (["--model", "gaussian_splatting", "--backend", "gsplat", "--device", "cpu"], "needs CUDA"),
])
def test_cli_user_errors(args, message):
    r = subprocess.run([sys.executable, "train/train_3d.py", *args], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr

"""train_3d.py / generate_3d.py --model nerf end to end (train, resume, render, mesh, point cloud, depth),
and user mistakes: one line on stderr, exit code 2, nothing half-written."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from utils.data.synthetic_scene import ensure_synthetic_scene

REPO = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _run(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=ENV)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return ensure_synthetic_scene(tmp_path_factory.mktemp("nerf_cli") / "s", n_train=4, n_test=2, size=16)


def _one_line_exit_2(r: subprocess.CompletedProcess, message: str) -> None:
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr


def test_train_resume_render_and_export(scene, tmp_path):
    out = tmp_path / "run"
    train = ["train/train_3d.py", "--model", "nerf", "--preset", "tiny", "--data", str(scene), "--out", str(out),
             "--device", "cpu", "--no-progress", "--no-tensorboard", "--video-frames", "3", "--threads", "1"]
    r = _run(*train, "--steps", "6")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["steps"] == 6 and metrics["preset"] == "tiny"
    assert {"psnr", "ssim", "lpips"} <= set(metrics) and (metrics["lpips"] is not None or "lpips_note" in metrics)
    assert len(list((out / "test_renders").glob("*.png"))) == 2 and len(list((out / "depth").glob("*.png"))) == 2
    assert (out / "camera_path.mp4").stat().st_size > 0 and (out / "ckpts" / "step_0000006.pt").is_file()
    r = _run(*train, "--steps", "8", "--resume")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "metrics.json").read_text())["steps"] == 8
    views = tmp_path / "views"
    from models.generation_3d.nerf.export import density_grid
    from models.generation_3d.nerf.pipeline import NeRFPipeline

    grid, _ = density_grid(NeRFPipeline.from_pretrained(out).model, 16)
    level = float(grid.flatten().quantile(0.9))  # 8 steps learn little: mesh the densest tenth
    r = _run("inference/generate_3d.py", "--model", "nerf", "--ckpt", str(out), "--frames", "2", "--size", "16",
             "--out", str(views), "--mesh", str(tmp_path / "mesh.ply"), "--mesh-resolution", "16",
             "--density-threshold", str(level), "--points", str(tmp_path / "points.ply"), "--num-points", "200",
             "--min-opacity", "0.05", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert (views / "camera_path.mp4").is_file() and len(list((views / "renders").glob("*.png"))) == 2
    assert len(list((views / "depth").glob("*.png"))) == 2
    from utils.visualization.mesh import read_mesh_ply
    from utils.visualization.ply import read_ply_vertices

    verts, faces, colors = read_mesh_ply(tmp_path / "mesh.ply")
    assert len(faces) > 0 and colors is not None and faces.max() < len(verts)
    assert 0 < len(read_ply_vertices(tmp_path / "points.ply")) <= 200
    assert "nerf/tiny" in r.stdout and "mesh" in r.stdout


def test_bad_scenes_fail_in_one_line_and_write_nothing(scene, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    base = ["train/train_3d.py", "--model", "nerf", "--preset", "tiny", "--out", str(out), "--device", "cpu"]
    _one_line_exit_2(_run(*base, "--data", str(empty)), "neither a NeRF-synthetic scene")
    # transforms that list more frames than there are images
    short = tmp_path / "short"
    shutil.copytree(scene, short)
    meta = json.loads((short / "transforms_train.json").read_text())
    meta["frames"].append({**meta["frames"][0], "file_path": "./train/r_99"})
    (short / "transforms_train.json").write_text(json.dumps(meta))
    _one_line_exit_2(_run(*base, "--data", str(short)), "missing")
    # a COLMAP model with more images than its images/ folder
    from utils.data.colmap import ColmapCamera, ColmapImage, write_colmap_model

    colmap = tmp_path / "colmap"
    (colmap / "images").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (16, 16)).save(colmap / "images" / "a.png")
    cams = {1: ColmapCamera(1, "PINHOLE", 16, 16, np.array([20.0, 20.0, 8.0, 8.0]))}
    ims = {i: ColmapImage(i, np.array([1.0, 0, 0, 0]), np.array([0.0, 0, 3.0]), 1, name)
           for i, name in enumerate(["a.png", "b.png", "c.png"], start=1)}
    write_colmap_model(colmap / "sparse" / "0", cams, ims, np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
    _one_line_exit_2(_run(*base, "--data", str(colmap)), "missing")
    assert not out.exists()


def test_a_checkpoint_of_another_preset_is_refused(scene, tmp_path):
    out = tmp_path / "run"
    r = _run("train/train_3d.py", "--model", "nerf", "--preset", "tiny", "--data", str(scene), "--out", str(out),
             "--steps", "2", "--device", "cpu", "--no-progress", "--no-tensorboard", "--video-frames", "0")
    assert r.returncode == 0, r.stderr
    views = tmp_path / "views"
    _one_line_exit_2(_run("inference/generate_3d.py", "--model", "nerf", "--ckpt", str(out), "--preset", "nerfacto",
                          "--out", str(views)), "holds a 'tiny' model, not 'nerfacto'")
    assert not views.exists()
    before = sorted(p.name for p in (out / "ckpts").iterdir())
    _one_line_exit_2(_run("train/train_3d.py", "--model", "nerf", "--preset", "vanilla", "--data", str(scene), "--out",
                          str(out), "--steps", "4", "--resume", "--device", "cpu"), "not 'vanilla'")
    assert sorted(p.name for p in (out / "ckpts").iterdir()) == before

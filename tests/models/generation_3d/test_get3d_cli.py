"""`inference/generate_3d.py --model get3d`: the tiny preset writes a textured .obj (+ .mtl + .png) or .glb and a
turntable video that read back; a trained run folder loads through --weights; bad inputs are one line and
write nothing."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh
from PIL import Image

from inference import generate_3d


def test_tiny_writes_textured_obj_and_turntable(tmp_path, capsys):
    out = tmp_path / "car.obj"
    assert generate_3d.main(["--model", "get3d", "--preset", "tiny", "--seed", "3", "--out", str(out),
                             "--turntable", str(tmp_path / "car.gif"), "--frames", "3", "--size", "24",
                             "--texture-size", "32"]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"car.obj", "car.mtl", "car.png", "car.gif"}
    mesh = trimesh.load(out, force="mesh", process=False)
    assert len(mesh.faces) > 0 and mesh.visual.uv.shape == (len(mesh.vertices), 2)
    gif = Image.open(tmp_path / "car.gif")
    assert gif.n_frames == 3 and gif.size == (24, 24)
    frames = []
    for i in range(3):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("RGB")))
    assert not np.array_equal(frames[0], frames[1])
    assert "get3d/tiny seed 3" in capsys.readouterr().out


def test_folder_output_and_glb(tmp_path):
    assert generate_3d.main(["--model", "get3d", "--preset", "tiny", "--out", str(tmp_path / "shape")]) == 0
    names = {p.name for p in (tmp_path / "shape").iterdir()}
    assert {"result.glb", "result.obj", "result.mtl", "result.png", "renders"} <= names
    glb = trimesh.load(tmp_path / "shape" / "result.glb", force="mesh", process=False)
    assert glb.visual.material.baseColorTexture is not None


@pytest.mark.parametrize("argv, fragment", [
    (["--out", "x.ply"], "cannot write a textured mesh as '.ply'"),
    (["--turntable", "x.avi"], "must end in .mp4, .gif or .webm"),
    (["--size", "4"], "--size must be at least 8"),
    (["--elevation", "120"], "--elevation must be between -89 and 89"),
    (["--weights", "missing.pt"], "--weights missing.pt not found"),
    (["--tets", "missing.npz"], "--tets missing.npz not found"),
    (["--preset", "shapenet-cat"], "did you mean"),
])
def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, argv, fragment):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as err:
        generate_3d.main(["--model", "get3d", "--preset", "tiny", *argv] if "--preset" not in argv
                         else ["--model", "get3d", *argv])
    assert err.value.code == 2
    text = capsys.readouterr().err
    assert fragment in text and "Traceback" not in text and len(text.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("*.*"))


def test_weights_of_a_training_run_and_a_get3d_grid_file(tmp_path):
    from train import train_3d
    from utils.rendering.dmtet import regular_tet_grid

    run = tmp_path / "run"
    assert train_3d.main(["--model", "get3d", "--builtin-shapes", "3", "--builtin-views", "2", "--held-out", "1",
                          "--batch", "2", "--resolution", "16", "--steps", "1", "--no-progress", "--no-tensorboard",
                          "--out", str(run)]) == 0
    grid = regular_tet_grid(6)
    np.savez(tmp_path / "6_tets.npz", vertices=grid.verts.numpy() * 3.0, tets=grid.tets.numpy())  # rescaled on load
    out = tmp_path / "mine.glb"
    assert generate_3d.main(["--model", "get3d", "--weights", str(run), "--preset", "tiny", "--tets",
                             str(tmp_path / "6_tets.npz"), "--out", str(out), "--size", "16",
                             "--texture-size", "16"]) == 0
    assert len(trimesh.load(out, force="mesh", process=False).faces) > 0

"""GET3D's training loop through `train/train_3d.py --model get3d`: a few steps on the built-in primitives
write checkpoints, the averaged generator as safetensors that the pipeline loads, logs, samples and the
held-out IoU; the losses and weights change; a resumed run equals an uninterrupted one step for step; the
data layouts (GET3D's ShapeNet renders, NeRF-synthetic) read views, silhouettes and camera angles; bad
inputs are one line. The IoU rise over a few hundred steps is the slow test."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from models.generation_3d.get3d.data import angles_from_position, load_multiview
from models.generation_3d.get3d.primitives import camera_from_angles
from train import train_3d

SMALL = ["--model", "get3d", "--builtin-shapes", "4", "--builtin-views", "2", "--held-out", "1", "--batch", "2",
         "--resolution", "16", "--no-progress", "--no-tensorboard"]


def _run(tmp_path, name, *extra):
    out = tmp_path / name
    assert train_3d.main([*SMALL, "--out", str(out), *extra]) == 0
    return out


def test_a_few_steps_write_a_loadable_run_and_move_the_weights(tmp_path):
    out = _run(tmp_path, "run", "--steps", "3", "--save-every", "2", "--sample-every", "3")
    assert sorted(p.name for p in (out / "ckpts").iterdir()) == ["step_0000002.pt", "step_0000003.pt"]
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["loss_d"]) and math.isfinite(r["loss_g"]) for r in rows)
    assert len({r["loss_g"] for r in rows}) == 3  # the losses move from step to step
    assert 0 <= rows[-1]["silhouette_iou"] <= 1 and (out / "samples" / "step_0000003.png").is_file()
    assert Image.open(out / "samples" / "step_0000003.png").size == (4 * 16, 2 * 16)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and "silhouette_iou_start" in metrics
    # the averaged generator moved away from its initialisation, and the pipeline draws with it
    from models.generation_3d.get3d.pipeline import GET3DPipeline
    sd = load_file(str(out / "generator.safetensors"))
    ckpt = torch.load(out / "ckpts" / "step_0000003.pt", weights_only=True)
    assert all(torch.equal(sd[k], v) for k, v in ckpt["G_ema"].items())
    from models.generation_3d.get3d.model import GET3DGenerator
    from models.generation_3d.get3d.trainer import model_config
    from utils.torch_utils import local_seed

    with local_seed(0):  # the run's seeded initialisation
        G0 = GET3DGenerator(model_config("tiny", 16))
    assert any(not torch.equal(sd[k], v) for k, v in G0.state_dict().items())
    pipe = GET3DPipeline.from_pretrained(str(out), preset="tiny")
    assert all(torch.equal(pipe.generator.state_dict()[k], v) for k, v in sd.items())
    shape = pipe(seed=0, n_views=2, render_size=16, texture_size=16)
    assert len(shape.renders) == 2


def test_resume_continues_exactly(tmp_path):
    straight = _run(tmp_path, "straight", "--steps", "4", "--save-every", "2", "--sample-every", "4")
    _run(tmp_path, "split", "--steps", "2", "--save-every", "2", "--sample-every", "4")
    split = _run(tmp_path, "split", "--steps", "4", "--save-every", "2", "--sample-every", "4", "--resume")
    a = torch.load(straight / "ckpts" / "step_0000004.pt", weights_only=True)
    b = torch.load(split / "ckpts" / "step_0000004.pt", weights_only=True)
    for net in ("G", "G_ema", "D"):
        assert all(torch.allclose(a[net][k], b[net][k], atol=1e-6) for k in a[net]), net
    rows = [json.loads(line)["step"] for line in (split / "log.jsonl").read_text().splitlines()]
    assert rows == [1, 2, 3, 4]


def test_bad_inputs_are_one_line(tmp_path, capsys):
    cases = [(["--steps", "0"], "must be at least 1, got 0"), (["--resolution", "12"], "power of two"),
             (["--data", str(tmp_path / "nope")], "is not a folder"), (["--resume"], "no checkpoint"),
             (["--gamma", "-1"], "--gamma must be 0 or more"), (["--preset", "shapenet-cat"], "did you mean"),
             (["--camera", str(tmp_path)], "--camera goes with --data")]
    for extra, fragment in cases:
        with pytest.raises(SystemExit) as err:
            train_3d.main([*SMALL, "--out", str(tmp_path / "bad"), *extra])
        assert err.value.code == 2
        text = capsys.readouterr().err
        assert fragment in text and "Traceback" not in text, (extra, text)
    _run(tmp_path, "taken", "--steps", "1", "--sample-every", "1")
    with pytest.raises(SystemExit):
        train_3d.main([*SMALL, "--out", str(tmp_path / "taken"), "--steps", "1"])
    assert "already holds another run" in capsys.readouterr().err


def _rgba(path, colour, box):
    img = Image.new("RGBA", (24, 24), (0, 0, 0, 0))
    img.paste(Image.new("RGBA", (box[2] - box[0], box[3] - box[1]), (*colour, 255)), box[:2])
    img.save(path)


def test_shapenet_render_layout_reads_views_masks_and_angles(tmp_path):
    img, cam = tmp_path / "img" / "02958343", tmp_path / "camera" / "02958343"
    for obj in ("a", "b"):
        (img / obj).mkdir(parents=True)
        (cam / obj).mkdir(parents=True)
        for k in range(3):
            _rgba(img / obj / f"{k:03d}.png", (200, 100, 50), (4, 6, 20, 18))
        np.save(cam / obj / "rotation.npy", np.array([0.0, 90.0, 180.0]))
        np.save(cam / obj / "elevation.npy", np.array([30.0, 20.0, 10.0]))
    views = load_multiview(img, 16)
    assert len(views) == 6 and views.images.shape == (6, 3, 16, 16) and views.objects.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.allclose(views.angles[1], torch.tensor([math.pi / 2, math.radians(70)]))
    assert set(views.masks.unique().tolist()) == {0.0, 1.0}
    assert (views.images * (1 - views.masks)).abs().max() == 0  # black outside the silhouette
    train, held = views.split_objects(1)
    assert len(train) == 3 and held.objects.unique().tolist() == [1]
    (cam / "b" / "rotation.npy").unlink()
    from utils.errors import UserError

    with pytest.raises(UserError, match="no cameras for b"):
        load_multiview(img, 16)


def test_nerf_synthetic_cameras_become_get3d_angles(tmp_path):
    mv = camera_from_angles(torch.tensor([0.4, 2.5]), torch.tensor([1.1, 0.7]), radius=4.0)
    frames = []
    for i, m in enumerate(mv):
        eye = -(m[:3, :3].T @ m[:3, 3])  # y-up world; Blender's z-up position is (x, -z, y)
        c2w = np.eye(4)
        c2w[:3, 3] = [float(eye[0]), -float(eye[2]), float(eye[1])]
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": c2w.tolist()})
        (tmp_path / "train").mkdir(exist_ok=True)
        _rgba(tmp_path / "train" / f"r_{i}.png", (10, 200, 30), (2, 2, 12, 12))
    (tmp_path / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))
    views = load_multiview(tmp_path, 16)
    assert torch.allclose(views.angles, torch.tensor([[0.4, 1.1], [2.5, 0.7]]), atol=1e-5)
    assert angles_from_position(np.array([0.0, 0.0, -1.2]))[1] == pytest.approx(math.pi / 2)


@pytest.mark.slow  # ~90 s on one loaded core: 300 steps of batch 4 at 32 px, IoU every 50
def test_tiny_preset_raises_the_held_out_silhouette_iou(tmp_path):
    out = tmp_path / "iou"
    assert train_3d.main(["--model", "get3d", "--out", str(out), "--no-progress", "--no-tensorboard"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    later = [e["silhouette_iou"] for e in m["evals"][1:]]
    assert max(later) > m["silhouette_iou_start"] + 0.05 and m["silhouette_iou"] > m["silhouette_iou_start"]

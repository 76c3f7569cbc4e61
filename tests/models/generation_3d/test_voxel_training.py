"""voxel_vae_gan training through the seed's command lines: exact resume, checkpoints, test entry, bad input."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch

from utils.data.co3d.builtin import split_dir, write_builtin

ROOT = Path(__file__).resolve().parents[3]


def _script(rel: str):
    spec = importlib.util.spec_from_file_location(rel.replace("/", "_")[:-3], ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


train_3d, evaluate_voxel, generate_3d = (_script("train/train_3d.py"), _script("evaluate/voxel_vae_gan.py"),
                                         _script("inference/generate_3d.py"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = write_builtin(tmp_path_factory.mktemp("vox") / "d", cube_len=16, splits={"train": 4, "val": 2, "test": 2},
                         views=3, image_size=32)
    return root


def _train(data, out, *extra):
    argv = ["--model", "voxel_vae_gan", "--config", "config/pose.yaml", "--preset", "tiny", "--cube_len", "16",
            "--image_size", "32", "--z_size", "16", "--input_dir", str(split_dir(data, "train")), "--output_dir",
            str(out), "--batch_size", "2", "--num_views", "2", "--combine_type", "mean", "--use_pose", "True",
            "--no_progress", "--no_tensorboard", "--vis_every", "1", "--save_every", "1", "--threads", "1", *extra]
    threads = torch.get_num_threads()
    try:
        assert train_3d.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


def _weights(out, epoch):
    from safetensors.torch import load_file

    return load_file(str(Path(out) / "checkpoints" / f"epoch_{epoch}" / "model.safetensors"))


def test_resume_from_an_epoch_folder_repeats_the_uninterrupted_run(data, tmp_path):
    import shutil

    full = _train(data, tmp_path / "full", "--n_epochs", "2")
    # the same run stopped after epoch 1: its epoch_2 folder never written (the KL schedule spans n_epochs)
    shutil.copytree(tmp_path / "full", tmp_path / "part", symlinks=True)
    shutil.rmtree(tmp_path / "part/checkpoints/epoch_2")
    (tmp_path / "part/checkpoints/latest").unlink()
    resumed = _train(data, tmp_path / "part", "--n_epochs", "2", "--resume", str(tmp_path / "part/checkpoints/epoch_1"))
    drop = lambda row: {k: v for k, v in row.items() if k != "seconds"}  # noqa: E731
    assert [drop(r) for r in resumed] == [drop(r) for r in full]
    a, b = _weights(tmp_path / "full", 2), _weights(tmp_path / "part", 2)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ckpts = tmp_path / "full" / "checkpoints"
    assert (ckpts / "latest").resolve() == (ckpts / "epoch_2").resolve()
    assert {p.name for p in (ckpts / "epoch_2").iterdir()} == {"training_state.pt", "model.safetensors", "config.json"}
    assert not [p for p in ckpts.iterdir() if p.name.startswith(".")]  # no temporary folders left
    assert (tmp_path / "full" / "visualizations" / "epoch_2.png").is_file()
    assert "val_iou" in full[-1] and full[-1]["kl_weight"] > full[0]["kl_weight"]


def test_start_epoch_and_the_seed_resume_forms(data, tmp_path, capsys):
    _train(data, tmp_path / "run", "--n_epochs", "1")
    # the same command again continues from checkpoints/latest (the seed's "resume from latest")
    rows = _train(data, tmp_path / "run", "--n_epochs", "2")
    assert [r["epoch"] for r in rows] == [1, 2] and "resuming from" in capsys.readouterr().err
    rows = _train(data, tmp_path / "run", "--n_epochs", "5", "--resume", str(tmp_path / "run/checkpoints/latest"),
                  "--start_epoch", "3")
    assert [r["epoch"] for r in rows] == [1, 2, 4, 5]
    assert sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir()) == [
        "epoch_1", "epoch_2", "epoch_4", "epoch_5", "latest"]


def test_the_test_entry_scores_renders_and_meshes(data, tmp_path, capsys):
    _train(data, tmp_path / "run", "--n_epochs", "1")
    argv = ["--model_path", str(tmp_path / "run/checkpoints/epoch_1/"), "--test_dir", str(split_dir(data, "test")),
            "--output_dir", str(tmp_path / "run"), "--num_views", "2", "--use_pose", "--threshold", "0.4"]
    assert evaluate_voxel.main(argv) == 0
    res = tmp_path / "run" / "test_results"
    m = json.loads((res / "metrics.json").read_text())
    assert m["objects"] == 2 and 0 <= m["mean_iou"] <= 1 and 0 <= m["baseline_mean_shape_iou"] <= 1
    assert {p.name for p in (res / "renders").iterdir()} == {"test_0000.png", "test_0001.png"}
    assert len(list((res / "voxels").iterdir())) == 2
    meshes = {p.name for p in (res / "meshes").iterdir()} if (res / "meshes").exists() else set()
    assert len(meshes) == 2 * (2 - m["empty_predictions"])
    # a threshold above every occupancy: empty predictions, and the seed's advice
    assert evaluate_voxel.main([*argv[:-1], "0.999"]) == 0
    err = capsys.readouterr().err
    assert "is empty at --threshold 0.999" in err and "--threshold 0.1" in err
    code, err = _cli(evaluate_voxel.main, [*argv[:6], "--use_pose", "False"], capsys)
    assert code == 2 and "trained with use_pose True: pass --use_pose" in err


def _cli(main, argv, capsys):
    from utils.errors import cli_errors

    with pytest.raises(SystemExit) as exit_info:
        with cli_errors("x"):
            main(argv)
    err = capsys.readouterr().err.strip()
    return exit_info.value.code, err


def test_bad_input_is_one_line_exit_2_and_writes_nothing(data, tmp_path, capsys):
    base = ["--model", "voxel_vae_gan", "--preset", "tiny", "--cube_len", "16", "--image_size", "32", "--z_size", "16",
            "--input_dir", str(split_dir(data, "train")), "--batch_size", "2", "--num_views", "2", "--no_progress",
            "--no_tensorboard"]
    cases = {
        "median": (["--combine_type", "median"], r"combine_type.*'median'"),
        "zero": (["--num_views", "0"], r"num_views.*(1 or more|at least 1)"),
        "layout": (["--input_dir", str(tmp_path)], r"not in the CO3D layout.*_processed"),
    }
    for name, (extra, pattern) in cases.items():
        out = tmp_path / f"out_{name}"
        code, err = _cli(train_3d.main, [*base, "--output_dir", str(out), *extra], capsys)
        assert code == 2 and re.search(pattern, err) and len(err.splitlines()) == 1, (name, err)
        assert not out.exists()
    import shutil

    broken = tmp_path / "broken" / "primitives"
    shutil.copytree(split_dir(data, "train"), broken)
    (broken / "train_0002_dataset_instance" / "train_0002.binvox").write_bytes(b"#binvox 1\ndim 16 16 16\n")
    code, err = _cli(train_3d.main, [*base, "--input_dir", str(broken), "--output_dir", str(tmp_path / "o")], capsys)
    assert code == 2 and "train_0002.binvox is not a valid binvox file" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
    shutil.rmtree(broken / "train_0001_processed" / "poses")
    code, err = _cli(train_3d.main, [*base, "--input_dir", str(broken), "--output_dir", str(tmp_path / "o")], capsys)
    assert code == 2 and "missing train_0001_processed/poses/" in err


def test_generate_3d_runs_a_checkpoint_on_image_files(data, tmp_path, capsys):
    _train(data, tmp_path / "run", "--n_epochs", "1")
    seq = split_dir(data, "test") / "test_0000_dataset_instance"
    poses = split_dir(data, "test") / "test_0000_processed" / "poses"
    argv = ["--model", "voxel_vae_gan", "--model_path", str(tmp_path / "run/checkpoints/latest"), "--images",
            str(seq / "images/frame000001.jpg"), str(seq / "images/frame000002.jpg"), "--poses",
            str(poses / "frame000001.json"), str(poses / "frame000002.json"), "--threshold", "0.3", "--size", "32",
            "--out", str(tmp_path / "gen")]
    assert generate_3d.main(argv) == 0
    assert (tmp_path / "gen" / "shape.binvox").is_file() and len(list((tmp_path / "gen" / "renders").iterdir())) == 4
    code, err = _cli(generate_3d.main, argv[:7] + ["--out", str(tmp_path / "gen2")], capsys)
    assert code == 2 and "trained with use_pose" in err and not (tmp_path / "gen2").exists()

"""benchmarks/luma_camera.py (the camera proof's motion diagnostics) on a seconds-long tiny run (--toy): every row
(rendered, VAE round trip, teacher forced with and without the adapter, from noise per camera_scale) is
measured for every preset, and a run folder without the trained files is one line, exit 2."""
from __future__ import annotations

import math

import pytest
import torch


@pytest.fixture
def one_thread():
    """Hundreds of tiny ops: one thread is several times faster than two on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_motion_table_on_a_tiny_run(tmp_path, one_thread):
    from benchmarks.luma_camera import AXES, load_run, motion_table
    from models.video_generation.luma_dream.training import CameraRunOptions, CameraTrainConfig, CameraTrainer

    cfg = CameraTrainConfig(steps=2, num_clips=2, num_frames=5, size=(16, 16), batch_size=2, hidden=8,
                            base_vae_steps=1, base_steps=1, sigma_mean=0.8)
    CameraTrainer(cfg, CameraRunOptions(out=str(tmp_path / "run"), progress=False)).run()
    table = motion_table(load_run(tmp_path / "run"), num_frames=5, size=(16, 16), per_preset=1, tf_levels=(0.5,),
                         tf_steps=2, scales=(1.0, 2.0))
    assert set(table) == {"rendered", "vae round trip", "teacher forced 0.5, adapter", "teacher forced 0.5, none",
                          "from noise, camera_scale 1", "from noise, camera_scale 2"}
    for row in table.values():
        assert set(row) == set(AXES) and all(math.isfinite(v) for v in row.values())
    assert table["rendered"]["pan-left"] > 0.3  # the rendered pan moves the asked way


def test_toy_run_prints_the_table(tmp_path, one_thread, capsys):
    from benchmarks.luma_camera import AXES, main

    table = main(["--toy", "--out", str(tmp_path / "toy"), "--json"])
    assert "vae round trip" in table and set(table["rendered"]) == set(AXES)
    out = capsys.readouterr().out
    assert "from noise, camera_scale 2" in out and (tmp_path / "toy" / "camera_adapter.safetensors").is_file()


def test_a_run_folder_without_its_files_is_one_line(tmp_path, capsys):
    from benchmarks.luma_camera import main

    with pytest.raises(SystemExit) as e:
        main(["--run", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "lacks base_vae.safetensors" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

"""benchmarks/gaussian_splatting.py at its toy size (both CPU backends timed, the speed-up reported),
and the still-life scene it writes for the time-budget run."""
from __future__ import annotations

import math

import torch

from benchmarks import gaussian_splatting


def test_toy_run_times_both_cpu_backends_and_reports_the_speedup(capsys):
    threads = torch.get_num_threads()
    r = gaussian_splatting.main(["--toy"])
    assert torch.get_num_threads() == threads  # restored
    out = capsys.readouterr().out
    rows = {row["backend"]: row for row in r["rows"]}
    assert set(rows) == {"numba", "torch"}
    for row in rows.values():
        assert row["gaussians"] == gaussian_splatting.GT_GAUSSIANS and row["size"] == 32 and row["threads"] == 1
        assert row["wall_s"] > 0 and row["cpu_s"] > 0 and math.isfinite(row["wall_s"])
        assert f"{1 / row['wall_s']:8.2f} it/s" in out
    key = f"{gaussian_splatting.GT_GAUSSIANS}@32px/1t"
    assert r["ratios"][key] == rows["torch"]["wall_s"] / rows["numba"]["wall_s"]
    assert "speed-up of numba over torch" in out and "load average" in out


def test_the_still_life_scene_is_a_nerf_synthetic_scene_unlike_the_builtin(tmp_path):
    from utils.data.nerf_synthetic import load_nerf_synthetic
    from utils.data.synthetic_scene import ground_truth_gaussians

    gs = gaussian_splatting.still_life_gaussians()
    assert len(gs["means"]) != len(ground_truth_gaussians(0)["means"])
    assert gs["means"][:, 2].min() > -0.05  # no floor below the objects
    root = gaussian_splatting.make_scene(str(tmp_path / "still_life"), n_train=3, n_test=2, size=24)
    train, test = load_nerf_synthetic(root, "train"), load_nerf_synthetic(root, "test")
    assert len(train) == 3 and len(test) == 2 and train.images.shape[1:] == (24, 24, 3)
    # objects on a transparent background composited on white: some pixels white, some not
    img = train.images[0]
    assert (img > 0.99).all(-1).float().mean() > 0.3 and (img < 0.9).any(-1).float().mean() > 0.05

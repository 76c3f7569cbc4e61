"""benchmarks/voxel_vae_gan.py at its toy size: both runs train, are scored, and the table is well formed."""
from __future__ import annotations

import math

import torch

from benchmarks import voxel_vae_gan


def test_toy_run_prints_well_formed_figures(capsys):
    threads = torch.get_num_threads()
    r = voxel_vae_gan.main(["--toy", "--no_progress"])
    assert torch.get_num_threads() == threads
    out = capsys.readouterr().out
    multi, single = r["rows"]
    assert (multi["num_views"], multi["use_pose"], single["num_views"], single["use_pose"]) == (4, True, 1, False)
    assert multi["steps"] == single["steps"] == 2 and multi["test_objects"] == 2
    for row in r["rows"]:
        assert 0 <= row["test_iou"] <= 1 and row["train_wall_s"] >= 0 and math.isfinite(row["train_cpu_s"])
    assert 0 <= r["baseline_iou"] <= 1 and isinstance(r["multi_view_beats_single"], bool)
    assert "mean-shape baseline" in out and f"{multi['test_iou']:9.4f}" in out

"""benchmarks/nerf.py at its toy size: every preset trains and renders, the figures are well formed.

On CPU there is no reference (nerfacc's estimators need CUDA): the benchmark says so and prints no ratio.
"""
from __future__ import annotations

import math

import torch

from benchmarks import nerf


def test_toy_run_prints_well_formed_figures(capsys):
    threads = torch.get_num_threads()
    try:
        r = nerf.main(["--toy", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert set(r) == set(nerf.PRESETS) and "ratio" not in r
    for name, row in r.items():
        assert row["train_rays_per_s"] > 0 and row["render_rays_per_s"] > 0 and math.isfinite(row["train_step_s"])
        assert row["params"] > 0 and row["size"] == 16 and row["train_samples_per_ray"] > 0
        assert f"{name:>11}: train {row['train_rays_per_s']:9.0f} rays/s" in out
    # the vanilla NeRF evaluates its 8 coarse + (8 + 8) fine samples on every ray
    assert r["vanilla"]["train_samples_per_ray"] == 8 + 17
    assert "no reference on CPU" in out

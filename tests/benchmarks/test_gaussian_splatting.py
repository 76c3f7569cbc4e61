"""benchmarks/gaussian_splatting.py at its toy size: training steps of the built-in scene are timed.

On CPU there is no reference (gsplat's rasterizer needs CUDA): the benchmark says so and prints no ratio.
"""
from __future__ import annotations

import math

import torch

from benchmarks import gaussian_splatting


def test_toy_run_prints_well_formed_figures(capsys):
    threads = torch.get_num_threads()
    try:
        r = gaussian_splatting.main(["--toy", "--threads", str(threads)])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    row = r["torch"]
    assert row["gaussians"] > 0 and row["wall_s"] > 0 and row["cpu_s"] > 0 and math.isfinite(row["wall_s"])
    assert "ratio" not in r and "no reference on CPU" in out
    assert f"{row['gaussians']} Gaussians, 32x32" in out and f"{1 / row['wall_s']:8.2f} it/s" in out

"""benchmarks/stylegan3.py at its toy size: the golden fixture's tiny StyleGAN3-T, whose output NVlabs' code made."""
from __future__ import annotations

import math

from benchmarks import stylegan3


def test_toy_run_prints_well_formed_figures(capsys):
    r = stylegan3.main(["--toy"])
    out = capsys.readouterr().out
    row = r["sizes"]["32"]
    assert row["ours_images_per_s"] > 0 and math.isfinite(row["ours_images_per_s"])
    assert row["max_abs_diff_vs_nvlabs"] < 1e-4  # the timed network reproduces the release's output
    assert "toy, batch 2" in out and "max abs diff vs NVlabs" in out

"""benchmarks/biggan.py at its toy size (preset tiny): pytorch-pretrained-biggan ran on the same weights."""
from __future__ import annotations

import math

from benchmarks import biggan


def test_toy_run_prints_well_formed_figures(capsys):
    r = biggan.main(["--toy"])
    out = capsys.readouterr().out
    assert r["reference_images_per_s"] > 0 and r["ours_images_per_s"] > 0
    assert math.isfinite(r["reference_images_per_s"] + r["ours_images_per_s"])
    assert math.isclose(r["ratio"], r["ours_images_per_s"] / r["reference_images_per_s"])
    assert r["max_abs_diff"] < 1e-4  # the reference generated from the converted weights and agrees
    assert "tiny, batch 2" in out and f"{r['ratio']:8.2f}x" in out

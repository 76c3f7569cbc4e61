"""benchmarks/digits_gans.py at its toy size: the shipped digits GANs are scored and timed."""
from __future__ import annotations

import math

from benchmarks import digits_gans


def test_toy_run_prints_well_formed_figures(capsys):
    r = digits_gans.main(["--toy"])
    out = capsys.readouterr().out
    assert 0.9 < r["ceiling"] <= 1  # the classifier reads real test digits
    for name in ("dcgan", "vanilla_gan"):
        row = r[name]
        assert row["num_images"] == 100
        # the shipped weights are trained: their digits are read as the class asked for (README: 0.99+)
        assert 0.8 < row["class_accuracy"] <= 1
        assert row["images_per_s"] > 0 and math.isfinite(row["images_per_s"])
        assert f"| {name} | {row['class_accuracy']:.3f} | {row['images_per_s']:.0f} |" in out

"""benchmarks/fid.py at its toy size: pytorch-fid ran on the same random weights and batches."""
from __future__ import annotations

import math

from benchmarks import fid


def test_toy_run_prints_well_formed_figures(capsys):
    r = fid.main(["--toy", "--device", "cpu"])
    out = capsys.readouterr().out
    assert r["images"] == 2
    assert r["reference_features_per_s"] > 0 and r["ours_features_per_s"] > 0
    assert math.isclose(r["ratio"], r["ours_features_per_s"] / r["reference_features_per_s"])
    assert r["max_abs_diff"] < 1e-4  # pytorch-fid's network ran on the same inputs and agrees
    assert f"ratio ours / pytorch-fid: {r['ratio']:.2f}" in out

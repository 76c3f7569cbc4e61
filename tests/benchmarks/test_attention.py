"""benchmarks/attention.py at its toy size: both sides ran on the same tensors and the figures hold together."""
from __future__ import annotations

import math

from benchmarks import attention


def test_toy_run_prints_well_formed_figures(capsys):
    r = attention.main(["--toy"])
    out = capsys.readouterr().out
    assert r["ours_s"] > 0 and r["theirs_s"] > 0 and math.isfinite(r["ours_s"] + r["theirs_s"])
    assert math.isclose(r["ratio"], r["ours_s"] / r["theirs_s"])
    assert r["max_abs_diff"] < 1e-5  # diffusers' dispatcher ran on the same q, k, v and agrees
    assert "L=64 heads=2 D=16" in out
    assert f"ratio ours/theirs: {r['ratio']:.3f}" in out

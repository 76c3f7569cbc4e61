"""benchmarks/upscale.py at its toy size: spandrel ran on the same weights and agrees with ours."""
from __future__ import annotations

import math

import pytest

from benchmarks import upscale


def test_toy_run_prints_well_formed_figures(capsys):
    r = upscale.main(["--toy"])
    out = capsys.readouterr().out
    assert r["ours_mpix_per_s"] > 0 and r["spandrel_mpix_per_s"] > 0
    assert math.isfinite(r["ours_mpix_per_s"] + r["spandrel_mpix_per_s"])
    assert math.isclose(r["ratio"], r["ours_mpix_per_s"] / r["spandrel_mpix_per_s"])
    assert r["max_abs_diff"] < 1e-4
    assert "x4 upscaling, toy" in out and f"{r['ratio']:8.2f}x" in out


def test_bad_sizes_exit_with_one_line(capsys):
    with pytest.raises(SystemExit) as err:
        upscale.main(["--toy", "--size", "0"])
    assert err.value.code == 2 and "--size: must be at least 1" in capsys.readouterr().err

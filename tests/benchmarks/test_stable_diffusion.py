"""benchmarks/stable_diffusion.py at its toy size: diffusers' UNet and SD3 transformer ran on the same weights."""
from __future__ import annotations

import math

from benchmarks import stable_diffusion


def test_toy_run_prints_well_formed_figures(capsys):
    r = stable_diffusion.main(["--toy"])
    out = capsys.readouterr().out
    for name in ("sdxl_unet", "sd3_mmdit"):
        row = r[name]
        for key in ("ours_min", "ours_median", "diffusers_min", "diffusers_median"):
            assert row[key] > 0 and math.isfinite(row[key]), (name, key)
        assert row["ours_min"] <= row["ours_median"] and row["diffusers_min"] <= row["diffusers_median"]
        assert math.isclose(row["ratio"], row["ours_min"] / row["diffusers_min"])
        assert row["max_abs_diff"] < 1e-4, name  # the reference ran on the same inputs and agrees
    assert "SDXL UNet (tiny)" in out and "SD3 MMDiT (tiny)" in out
    assert f"{r['sd3_mmdit']['ratio']:9.3f}" in out

"""benchmarks/flux.py at its toy size: diffusers' FluxTransformer2DModel ran on the same weights and inputs."""
from __future__ import annotations

import math

from benchmarks import flux


def test_toy_run_prints_well_formed_figures(capsys):
    r = flux.main(["--toy"])
    out = capsys.readouterr().out
    for key in ("ours_s", "diffusers_s", "ours_cpu_s", "diffusers_cpu_s"):
        assert r[key] > 0 and math.isfinite(r[key]), key
    assert math.isclose(r["ratio"], r["ours_s"] / r["diffusers_s"])
    assert math.isclose(r["cpu_ratio"], r["ours_cpu_s"] / r["diffusers_cpu_s"])
    assert r["min_cpu_ratio"] > 0
    assert r["max_abs_diff"] < 1e-4  # the reference denoised the same tokens and agrees
    assert r["image_tokens"] == 64 and r["text_tokens"] == 8 and 0 < r["params_m"] < 1
    assert "64 image + 8 text tokens" in out and f"ratio ours/diffusers {r['ratio']:.3f}" in out

"""benchmarks/vae.py at its toy size: diffusers' AutoencoderKL decoded the same latent with the same weights."""
from __future__ import annotations

import math

from benchmarks import vae


def test_toy_run_prints_well_formed_figures(capsys):
    r = vae.main(["--toy"])
    out = capsys.readouterr().out
    assert (r["preset"], r["size"], r["device"]) == ("tiny", 64, "cpu")
    for key in ("ours_s", "diffusers_s", "ours_cpu_s", "diffusers_cpu_s"):
        assert r[key] > 0 and math.isfinite(r[key]), key
    assert math.isclose(r["ratio"], r["ours_s"] / r["diffusers_s"])
    assert r["max_abs_diff"] < 1e-4  # the reference decoded the same latent and agrees
    assert f"ratio ours/diffusers {r['ratio']:.3f}" in out

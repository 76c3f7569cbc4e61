"""benchmarks/svd.py at its toy size: our SVD UNet and diffusers' ran interleaved on the same weights, and the
temporal VAE decoded all at once and in chunks."""
from __future__ import annotations

import math

from benchmarks import svd


def test_toy_run_prints_well_formed_figures(capsys):
    r = svd.main(["--toy", "--decode-frames", "6", "--chunk", "2"])
    out = capsys.readouterr().out
    u, m = r["unet"], r["decode"]
    for key in ("ours_s", "diffusers_s", "ours_cpu_s", "diffusers_cpu_s"):
        assert u[key] > 0 and math.isfinite(u[key]), key
    assert math.isclose(u["ratio"], u["ours_s"] / u["diffusers_s"])
    assert u["max_abs_diff"] < 1e-4  # the reference ran on the same inputs and agrees
    assert (u["unet"], u["frames"], m["frames"], m["chunk"]) == ("tiny", 4, 6, 2)
    assert m["peak_mb_all_at_once"] > 0 and m["peak_mb_chunked"] > 0
    assert f"ratio ours/diffusers {u['ratio']:.3f}" in out and "in chunks of 2" in out


def test_bad_sizes_are_one_line_errors(capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_:
        svd.main(["--latent", "abc"])  # refused before anything runs
    assert exit_.value.code == 2
    assert "HxW" in capsys.readouterr().err

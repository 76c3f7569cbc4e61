"""benchmarks/video_transformers.py at its toy size: our Wan and LTX-Video transformers and diffusers' ran
interleaved on the same weights, and the Wan VAE decoded whole and in causal chunks."""
from __future__ import annotations

import math

import pytest

from benchmarks import video_transformers


def test_toy_run_prints_well_formed_figures(capsys):
    r = video_transformers.main(["--toy", "--decode-frames", "5"])
    out = capsys.readouterr().out
    for name in ("wan", "ltx"):
        s = r[name]
        for key in ("ours_s", "diffusers_s", "ours_cpu_s", "diffusers_cpu_s"):
            assert s[key] > 0 and math.isfinite(s[key]), (name, key)
        assert math.isclose(s["ratio"], s["ours_s"] / s["diffusers_s"])
        assert s["max_abs_diff"] < 1e-4  # the reference ran on the same inputs and agrees
        assert s["size"] == "tiny" and s["grid"] == [2, 4, 4]
        assert f"ratio ours/diffusers {s['ratio']:.3f}" in out
    assert r["wan"]["tokens"] == 8 and r["ltx"]["tokens"] == 32  # Wan patches 2x2, LTX does not
    m = r["decode"]
    assert (m["frames"], m["latent_frames"], m["chunk"]) == (5, 2, 1)
    assert m["peak_mb_whole"] > 0 and m["peak_mb_chunked"] > 0
    assert "in chunks of 1 latent frame(s)" in out


def test_only_one_part(capsys):
    r = video_transformers.main(["--toy", "--only", "wan"])
    assert set(r) == {"wan"}
    assert "LTX" not in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [(["--latent", "5x16"], "FxHxW"), (["--vae-size", "ab"], "HxW"),
                                          (["--toy", "--only", "vae", "--decode-frames", "6"], "1 + 4k"),
                                          (["--size", "tiny", "--only", "wan", "--latent", "2x3x4"], "multiples of the patch")])
def test_bad_sizes_are_one_line_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        video_transformers.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err

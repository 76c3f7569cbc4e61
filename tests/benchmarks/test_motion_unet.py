"""benchmarks/motion_unet.py at its toy size: our MotionUNet and diffusers' UNetMotionModel ran interleaved on the
same weights (through our converters) and agree."""
from __future__ import annotations

import json
import math

import pytest

from benchmarks import motion_unet


def test_toy_run_prints_well_formed_figures(capsys):
    r = motion_unet.main(["--toy", "--threads", "1", "--json"])
    out = capsys.readouterr().out
    for key in ("ours_s", "diffusers_s", "ours_cpu_s", "diffusers_cpu_s"):
        assert r[key] > 0 and math.isfinite(r[key]), key
    assert math.isclose(r["ratio"], r["ours_s"] / r["diffusers_s"])
    assert r["max_abs_diff"] < 1e-4  # the reference ran on the same inputs and agrees
    assert (r["unet"], r["frames"], r["latent"], r["repeats"], r["threads"]) == ("tiny", 4, [16, 16], 3, 1)
    assert f"ratio ours/diffusers {r['ratio']:.3f}" in out
    assert json.loads(out.strip().splitlines()[-1])["ratio"] == r["ratio"]


def test_bad_input_is_one_line(capsys):
    for argv, words in ((["--latent", "abc"], "HxW"), (["--latent", "12x12"], "multiple of 8"),
                        (["--unet", "huge"], "mid, tiny or sd15")):
        with pytest.raises(SystemExit) as exit_:
            motion_unet.main(argv)  # refused before anything is built
        assert exit_.value.code == 2
        assert words in capsys.readouterr().err

"""benchmarks/dalle3.py at its toy size: decode times of the consistency decoder (1 and 2 steps) against the
VAE decoder at two sizes, and LCM 4 steps against 30 guided steps, as ratios in one run."""
from __future__ import annotations

import math

from benchmarks import dalle3


def test_toy_run_prints_every_ratio(capsys):
    r = dalle3.main(["--toy"])
    out = capsys.readouterr().out
    assert r["device"] == "cpu" and [row["size"] for row in r["decode"]] == [32, 64]
    for row in r["decode"]:
        for key in ("vae_s", "consistency_1_s", "consistency_2_s"):
            assert row[key] > 0 and math.isfinite(row[key]), key
        assert math.isclose(row["ratio_2"], row["consistency_2_s"] / row["vae_s"])
        assert f"decode {row['size']}px" in out and f"(x{row['ratio_1']:.2f})" in out
    s = r["sampling"]
    assert (s["slow_steps"], s["fast_steps"]) == (30, 4)
    # 60 UNet calls against 4: a ratio this far from 15 would mean the modes ran something else
    assert 3 < s["speedup"] < 60
    assert f"LCM is {s['speedup']:.1f}x faster" in out


def test_only_one_part_times_that_part(capsys):
    r = dalle3.main(["--toy", "--only", "sampling"])
    out = capsys.readouterr().out
    assert "decode" not in r and r["sampling"]["speedup"] > 1
    assert "LCM is" in out and "decode 32px" not in out

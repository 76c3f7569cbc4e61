"""benchmarks/aetherist.py at its toy size: rows are well formed and the seed's table is quoted beside ours."""
from __future__ import annotations

import pytest
import torch

from benchmarks import aetherist


def test_toy_run_prints_well_formed_rows(capsys):
    threads = torch.get_num_threads()
    try:
        rows = aetherist.main(["--toy", "--iters", "1", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert set(rows) == {"tiny@32", "tiny@64"}
    for key, r in rows.items():
        assert r["images_per_s"] > 0 and r["peak_gb"] > 0 and r["out_shape"] == (2, 3, r["size"], r["size"])
    assert "seed (RTX 4090" not in out.splitlines()[0]  # 32 px has no seed row
    assert "img/s" in out


def test_bad_sizes_exit_2(capsys):
    with pytest.raises(SystemExit) as err:
        aetherist.main(["--sizes", "300", "--presets", "aetherist-base", "--iters", "1"])
    assert err.value.code == 2
    assert "256 and 512" in capsys.readouterr().err


@pytest.mark.slow
def test_consistency_ablation_reports_both_runs(capsys):
    scores = aetherist.ablation(steps=1, batch=2, samples=1)
    assert set(scores) == {"with_consistency", "without_consistency"}
    for row in scores.values():
        assert 0 <= row["consistency_3d"] <= 100 and row["cpu_s"] > 0
    assert "3D consistency" in capsys.readouterr().out

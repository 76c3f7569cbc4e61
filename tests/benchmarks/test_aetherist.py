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


def test_consistency_ablation_reports_both_runs_and_repeats_exactly(capsys):
    threads = torch.get_num_threads()
    try:
        rows = aetherist.main(["--ablation-steps", "1", "--no-speed", "--batch", "2", "--ablation-samples", "2",
                               "--ablation-seeds", "0", "1", "--threads", "1"])
        alone = aetherist.ablation(steps=1, batch=2, samples=2, seed=1, arms=("without_consistency",))
    finally:
        torch.set_num_threads(threads)
    assert set(rows) == {"ablation"} and set(rows["ablation"]) == {0, 1}
    for scores in rows["ablation"].values():
        assert set(scores) == {"with_consistency", "without_consistency"}
        for row in scores.values():
            assert 0 <= row["consistency_3d"] <= 100 and 0 <= row["chance"] <= 100 and row["cpu_s"] > 0
            assert row["gap"] == pytest.approx(row["consistency_3d"] - row["chance"])
            assert 0 <= row["shuffled"] <= 100 and row["contrast"] >= 0
    # an arm's figures are a function of (steps, batch, samples, seed) alone: run on its own (as in a process
    # of its own) it repeats the full run's, so the documented command reproduces the README's figures
    assert set(alone) == {"without_consistency"}
    for key in ("consistency_3d", "chance", "gap", "shuffled", "contrast", "loss_d_last"):
        assert alone["without_consistency"][key] == rows["ablation"][1]["without_consistency"][key], key
    out = capsys.readouterr().out
    assert out.count("3D consistency") == 5 and "gap" in out
    # the paired summary over the seeds: each seed's gap difference, their mean and the count of wins
    diffs = [r["with_consistency"]["gap"] - r["without_consistency"]["gap"] for r in rows["ablation"].values()]
    summary = next(line for line in out.splitlines() if line.startswith("gap with - without"))
    assert f"mean {sum(diffs) / 2:+.2f} points, higher in {sum(d > 0 for d in diffs)} of 2 seeds" in summary

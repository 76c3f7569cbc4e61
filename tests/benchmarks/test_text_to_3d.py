"""benchmarks/text_to_3d.py at its toy size: both pipelines run, the figures are well formed."""
from __future__ import annotations

import math

import torch

from benchmarks import text_to_3d


def test_toy_run_times_ours_and_diffusers(capsys):
    threads = torch.get_num_threads()
    try:
        r = text_to_3d.main(["--toy", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert set(r) == {"tiny"}
    row = r["tiny"]
    assert row["ours_s"] > 0 and row["diffusers_s"] > 0 and math.isfinite(row["ratio"])
    assert abs(row["ratio"] - row["ours_s"] / row["diffusers_s"]) < 1e-9
    assert row["faces"] > 0 and row["mesh_s"] > 0
    assert f"ratio {row['ratio']:.2f}" in out


def test_a_frame_size_diffusers_cannot_render_is_refused(capsys):
    import pytest

    with pytest.raises(SystemExit) as exit_:
        text_to_3d.main(["--toy", "--frame-size", "16"])
    assert exit_.value.code == 2
    assert "multiple of 4096" in capsys.readouterr().err

"""benchmarks/gan_augmentation.py at its toy size: three accuracies in [0, 1] on the real test split."""
from __future__ import annotations

import pytest

from benchmarks import gan_augmentation


def test_toy_run_prints_well_formed_figures(capsys):
    r = gan_augmentation.main(["--toy"])
    out = capsys.readouterr().out
    for name in ("real", "real+gan", "real+gan-filt"):
        assert 0.0 <= r[name]["mean"] <= 1.0 and len(r[name]["runs"]) == 1
        assert f"test accuracy {r[name]['mean']:.3f}" in out
    assert r["test_images"] > 300 and 0 <= r["filtered_kept"][0] <= 100
    assert r["real"]["mean"] > 0.15  # 50 real digits already beat chance (0.1)


def test_bad_counts_exit_with_one_line(capsys):
    with pytest.raises(SystemExit) as err:
        gan_augmentation.main(["--real-per-class", "0"])
    assert err.value.code == 2 and "--real-per-class" in capsys.readouterr().err

"""`fid_score.py --model dcgan --ref-stats ...` through the real DCGAN pipeline and the real CLI.

The Inception weights are random (written by the test), so the FID value itself means nothing;
what is proved is the path: registered model -> facade -> seeded batches -> features -> distance.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


def test_fid_of_the_shipped_dcgan_against_saved_digit_stats(tmp_path):
    from utils.metrics.inception import FIDInceptionV3
    from utils.data.digits import digits_tensor
    from utils.visualization.grid import to_pil

    torch.manual_seed(0)
    torch.save(FIDInceptionV3().state_dict(), tmp_path / "inception.pth")
    images, _ = digits_tensor(size=32, split="test")
    (tmp_path / "real").mkdir()
    for i, im in enumerate(to_pil(images[:12])):
        im.save(tmp_path / "real" / f"{i}.png")
    common = ["--weights", str(tmp_path / "inception.pth"), "--dims", "64", "--device", "cpu", "--quiet"]
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "evaluate" / "fid_score.py"), *a, *common],  # noqa: E731
                                    capture_output=True, text=True, cwd=tmp_path)
    res = run(str(tmp_path / "real"), "--save-stats", str(tmp_path / "ref.npz"))
    assert res.returncode == 0, res.stderr
    stats = np.load(tmp_path / "ref.npz")
    assert stats["mu"].shape == (64,) and stats["sigma"].shape == (64, 64)
    res = run("--model", "dcgan", "--ref-stats", str(tmp_path / "ref.npz"), "--num-samples", "12",
              "--batch-size", "6")
    assert res.returncode == 0, res.stderr
    fid = float(res.stdout.strip().split("FID:")[1].split()[0])
    assert np.isfinite(fid) and fid >= 0
    res = run("--model", "dcgn", "--ref-stats", str(tmp_path / "ref.npz"))
    assert res.returncode == 2 and "did you mean: dcgan" in res.stderr and res.stderr.count("\n") == 1

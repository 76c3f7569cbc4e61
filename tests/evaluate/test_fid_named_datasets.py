"""evaluate/fid_score.py reads the standard datasets from --data-dir (here MNIST's idx files)."""
from __future__ import annotations

import numpy as np
import torch

from tests.utils.test_named_datasets import make_mnist


def test_fid_stats_of_mnist_from_data_dir(tmp_path, call_script):
    from utils.metrics.inception import FIDInceptionV3

    (tmp_path / "mnist").mkdir()
    make_mnist(tmp_path / "mnist", n=4)
    torch.manual_seed(0)
    torch.save(FIDInceptionV3().state_dict(), tmp_path / "inception.pth")
    code, out, err = call_script("fid_score", "--dataset", "mnist", "--data-dir", str(tmp_path / "mnist"),
                                 "--dataset-size", "28", "--weights", str(tmp_path / "inception.pth"),
                                 "--save-stats", str(tmp_path / "mnist.npz"), "--dims", "64", "--quiet")
    assert code == 0, err
    stats = np.load(tmp_path / "mnist.npz")
    assert stats["mu"].shape == (64,) and stats["sigma"].shape == (64, 64)

    code, out, err = call_script("fid_score", "--dataset", "cifar10", "--weights", str(tmp_path / "inception.pth"),
                                 "--save-stats", str(tmp_path / "c.npz"))
    assert code == 2 and "--data-dir" in err and "cs.toronto.edu" in err
    assert not (tmp_path / "c.npz").exists()

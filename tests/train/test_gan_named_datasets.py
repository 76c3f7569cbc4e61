"""train_gan.py --dataset NAME --data-dir DIR trains on a standard dataset's real files (MNIST idx here)."""
from __future__ import annotations

import json

import pytest

from tests.utils.test_named_datasets import make_mnist
from train.train_gan import main


def test_train_gan_reads_mnist_from_data_dir(tmp_path):
    (tmp_path / "mnist").mkdir()
    make_mnist(tmp_path / "mnist", n=8)
    out = tmp_path / "run"
    main(["--model", "dcgan", "--preset", "tiny", "--dataset", "mnist", "--data-dir", str(tmp_path / "mnist"),
          "--steps", "2", "--batch-size", "4", "--out", str(out), "--no-progress", "--cpu"])
    settings = json.loads((out / "settings.json").read_text())
    assert settings["dataset"] == "mnist" and settings["data_dir"] == str(tmp_path / "mnist")
    assert (out / "generator.safetensors").is_file()


def test_a_standard_dataset_without_data_dir_exits_with_its_source(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["--model", "dcgan", "--preset", "tiny", "--dataset", "cifar10", "--steps", "1", "--out",
              str(tmp_path / "run"), "--no-progress", "--cpu"])
    assert err.value.code == 2
    line = capsys.readouterr().err.strip()
    assert "--data-dir" in line and "cifar-10-python.tar.gz" in line and len(line.splitlines()) == 1

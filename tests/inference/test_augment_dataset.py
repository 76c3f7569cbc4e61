"""inference/augment_dataset.py: a class-balanced folder with labels, the confidence filter, and errors."""
from __future__ import annotations

import json

import pytest
import torch

from inference.augment_dataset import main


def test_shipped_digits_gan_writes_a_balanced_labelled_folder(tmp_path):
    from utils.data.image_folder import ImageFolderDataset

    out = tmp_path / "synthetic"
    result = main(["--model", "dcgan", "--per-class", "3", "--out", str(out), "--seed", "1"])
    assert result["written"] == {str(c): 3 for c in range(10)}
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and sorted({r["label"] for r in rows}) == list(range(10))
    assert all((out / r["file_name"]).is_file() and r["file_name"].startswith(f"{r['label']}/") for r in rows)
    data = ImageFolderDataset(out, class_labels=True, size=32)
    assert len(data) == 30 and data.classes == [str(c) for c in range(10)]
    assert data[7]["image"].shape == (3, 32, 32)

    again = tmp_path / "again"
    main(["--model", "dcgan", "--per-class", "3", "--out", str(again), "--seed", "1", "--classes", "3,7"])
    assert sorted(p.name for p in again.iterdir() if p.is_dir()) == ["3", "7"]
    assert (again / "7" / "7_00002.png").read_bytes() == (out / "7" / "7_00002.png").read_bytes()  # seeded per class


def test_the_classifier_filter_keeps_only_confident_images(tmp_path):
    from utils.nn.small_classifier import SmallCNN, SmallCNNConfig, save_classifier

    torch.manual_seed(0)
    clf = SmallCNN(SmallCNNConfig())
    with torch.no_grad():  # a classifier that always says "4" with certainty
        clf.fc.weight.zero_()
        clf.fc.bias.copy_(torch.tensor([0.0] * 4 + [50.0] + [0.0] * 5))
    save_classifier(tmp_path / "clf.safetensors", clf)
    out = tmp_path / "filtered"
    result = main(["--model", "dcgan", "--per-class", "2", "--out", str(out), "--classes", "4,5",
                   "--classifier", str(tmp_path / "clf.safetensors"), "--max-tries", "2", "--batch-size", "4"])
    assert result["written"] == {"4": 2, "5": 0}  # nothing it doubts is written
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == [4, 4] and all(r["confidence"] > 0.99 for r in rows)


def test_balance_tops_each_class_up_to_the_target(tmp_path):
    from PIL import Image

    real = tmp_path / "real"
    for c, n in (("1", 4), ("2", 1), ("3", 6)):
        (real / c).mkdir(parents=True)
        for i in range(n):
            Image.new("L", (8, 8), i).save(real / c / f"{i}.png")
    result = main(["--model", "dcgan", "--per-class", "5", "--out", str(tmp_path / "top"), "--classes", "1,2,3",
                   "--balance", str(real)])
    assert result["written"] == {"1": 1, "2": 4, "3": 0}
    (real / "cat").mkdir()
    Image.new("L", (8, 8)).save(real / "cat" / "x.png")
    with pytest.raises(SystemExit):
        main(["--model", "dcgan", "--per-class", "5", "--out", str(tmp_path / "bad"), "--balance", str(real)])


@pytest.mark.parametrize("extra,message", [
    (["--per-class", "0"], "--per-class must be at least 1"),
    (["--model", "cyclegan"], "does not generate from noise"),
    (["--classes", "11"], "'11' is not a class"),
    (["--min-confidence", "1.5"], "--min-confidence must be in [0, 1]"),
])
def test_mistakes_are_one_line(tmp_path, capsys, extra, message):
    args = ["--model", "dcgan", "--per-class", "1", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as err:
        main(args + extra)
    assert err.value.code == 2
    assert message in capsys.readouterr().err

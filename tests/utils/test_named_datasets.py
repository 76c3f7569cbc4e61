"""The standard datasets by name on tiny files in each real format: counts, shapes, dtypes, labels, errors."""
from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from utils.data.datasets import get_dataset
from utils.errors import UserError


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    raw = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    raw += array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(raw)


def make_mnist(root: Path, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10
    write_idx(root / "train-images-idx3-ubyte.gz", images, gz=True)
    write_idx(root / "train-labels-idx1-ubyte", labels)
    write_idx(root / "t10k-images-idx3-ubyte", images[:2])
    write_idx(root / "t10k-labels-idx1-ubyte", labels[:2])
    return images, labels


def cifar_pickle(obj) -> bytes:
    """Protocol 2 with numpy 1's module name, as the released batches spell it."""
    return pickle.dumps(obj, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def make_cifar(root: Path, per_batch: int = 3) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
                 b"data": rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8),
                 b"filenames": [b"x.png"] * per_batch}
        (folder / name).write_bytes(cifar_pickle(batch))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(cifar_pickle({b"label_names": names, b"num_vis": 3072}))
    return folder


def test_mnist_idx_files_gzipped_or_not(tmp_path):
    images, labels = make_mnist(tmp_path)
    data = get_dataset("mnist", data_dir=tmp_path)
    assert len(data) == 5 and data.num_classes == 10
    item = data[3]
    assert item["image"].shape == (1, 28, 28) and item["image"].dtype == torch.float32
    assert item["label"] == 3
    assert torch.allclose((item["image"][0] + 1) * 127.5, torch.from_numpy(images[3]).float(), atol=1e-3)
    assert len(get_dataset("mnist", data_dir=tmp_path, split="test")) == 2
    assert get_dataset("mnist", data_dir=tmp_path, size=32)[0]["image"].shape == (1, 32, 32)


def test_mnist_errors_say_where_the_files_come_from(tmp_path):
    with pytest.raises(UserError, match="--data-dir.*yann.lecun.com"):
        get_dataset("mnist")
    with pytest.raises(UserError, match="train-images-idx3-ubyte.*yann.lecun.com"):
        get_dataset("mnist", data_dir=tmp_path)
    make_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09ab")
    with pytest.raises(UserError, match="truncated"):
        get_dataset("mnist", data_dir=tmp_path)


def test_cifar10_python_batches(tmp_path):
    make_cifar(tmp_path)
    data = get_dataset("cifar10", data_dir=tmp_path)
    assert len(data) == 15 and data.classes[1] == "automobile" and data.num_classes == 10
    item = data[4]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert isinstance(item["label"], int) and 0 <= item["label"] < 10
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_2").read_bytes(), encoding="bytes")
    want = torch.from_numpy(raw[b"data"][1].reshape(3, 32, 32)).float()
    assert torch.allclose((item["image"] + 1) * 127.5, want, atol=1e-3)
    assert item["label"] == raw[b"labels"][1]
    assert len(get_dataset("cifar10", data_dir=tmp_path / "cifar-10-batches-py", split="test")) == 3


class RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp") / f"cifar_pickle_ran_{os.getpid()}"


def test_cifar10_refuses_a_batch_whose_pickle_would_run_code(tmp_path):
    folder = make_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": RunsCode(), b"labels": [1]}, protocol=2))
    with pytest.raises(UserError, match="refusing .*data_batch_3.*(posix|os).system"):
        get_dataset("cifar10", data_dir=tmp_path)
    assert not MARKER.exists()


def make_celeba(root: Path) -> None:
    (root / "img_align_celeba").mkdir(parents=True)
    names = ["000001.jpg", "000002.jpg", "000003.jpg"]
    for i, n in enumerate(names):
        Image.new("RGB", (178, 218), (40 * i, 90, 200)).save(root / "img_align_celeba" / n)
    attrs = ["5_o_Clock_Shadow", "Smiling", "Young"]
    rows = ["000001.jpg  1 -1  1", "000002.jpg -1  1  1", "000003.jpg -1  1 -1"]
    (root / "list_attr_celeba.txt").write_text("3\n" + " ".join(attrs) + "\n" + "\n".join(rows) + "\n")
    (root / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 0\n000003.jpg 2\n")


def test_celeba_attributes_and_splits(tmp_path):
    make_celeba(tmp_path / "celeba")
    data = get_dataset("celeba", data_dir=tmp_path, size=64, label_attr="Smiling")  # torchvision's layout
    assert len(data) == 2 and data.num_classes == 2
    item = data[1]
    assert item["image"].shape == (3, 64, 64)
    assert item["attributes"].tolist() == [0, 1, 1] and item["attributes"].dtype == torch.long
    assert [data[i]["label"] for i in range(2)] == [0, 1]
    assert len(get_dataset("celeba", data_dir=tmp_path / "celeba", split="test")) == 1
    assert len(get_dataset("celeba", data_dir=tmp_path / "celeba", split="all")) == 3
    with pytest.raises(UserError, match="no attribute 'Smile'.*Smiling"):
        get_dataset("celeba", data_dir=tmp_path, label_attr="Smile")
    with pytest.raises(UserError, match="img_align_celeba.*mmlab"):
        get_dataset("celeba", data_dir=tmp_path / "nothing")


def test_ffhq_folders_and_dataset_tool_zip(tmp_path):
    for layout, side in (("images1024x1024", 64), ("thumbnails128x128", 16)):
        for i in range(3 if side == 64 else 2):
            (tmp_path / layout / "00000").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (side, side), (i * 50, 0, 0)).save(tmp_path / layout / "00000" / f"0000{i}.png")
    assert len(get_dataset("ffhq", data_dir=tmp_path, size=256)) == 3  # the 1024 images
    small = get_dataset("ffhq", data_dir=tmp_path, size=8)  # the thumbnails are large enough
    assert len(small) == 2 and small[0]["image"].shape == (3, 8, 8)

    archive = tmp_path / "ffhq-16.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(4):
            buf = io.BytesIO()
            Image.new("RGB", (16, 16), (0, i * 60, 0)).save(buf, format="PNG")
            zf.writestr(f"00000/img{i:08d}.png", buf.getvalue())
        zf.writestr("dataset.json", json.dumps({"labels": [[f"00000/img{i:08d}.png", i % 2] for i in range(4)]}))
    zipped = get_dataset("ffhq", data_dir=archive)
    assert len(zipped) == 4 and zipped.num_classes == 2 and zipped[3]["label"] == 1
    assert zipped[2]["image"].shape == (3, 16, 16)
    assert len(get_dataset(str(archive), size=8)) == 4  # any zip of images, by path


def test_lsun_category_folders(tmp_path):
    for category, n in (("bedroom", 3), ("church_outdoor", 2)):
        (tmp_path / f"{category}_train" / "a1").mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (40, 30), (i, 0, 0)).save(tmp_path / f"{category}_train" / "a1" / f"{i}.webp")
    both = get_dataset("lsun", data_dir=tmp_path, size=16)
    assert len(both) == 5 and both.num_classes == 2 and both.classes == ["bedroom", "church_outdoor"]
    assert both[4]["label"] == 1 and both[0]["image"].shape == (3, 16, 16)
    one = get_dataset("lsun", data_dir=tmp_path, categories="church_outdoor")
    assert len(one) == 2 and one[0]["label"] is None
    with pytest.raises(UserError, match="no tower_train folder.*found: bedroom, church_outdoor"):
        get_dataset("lsun", data_dir=tmp_path, categories="tower")


def test_prepare_unpacks_an_archive_and_refuses_escaping_members(tmp_path, capsys):
    from utils.data.prepare import main

    src = tmp_path / "src"
    make_cifar(src)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    assert main(["cifar10", "--from", str(archive), "--data-dir", str(tmp_path / "data")]) == 0
    assert "cifar10: 15 images ready" in capsys.readouterr().out

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(SystemExit) as exit_info:
        main(["mnist", "--from", str(evil), "--data-dir", str(tmp_path / "m")])
    assert exit_info.value.code == 2
    assert "outside --data-dir" in capsys.readouterr().err
    assert not (tmp_path / "outside.txt").exists()

"""LSUN's official LMDB layout (keys -> webp / jpeg bytes) written tiny and read back through the dataset."""
import io
import pickle

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image

from utils.data.lsun import LSUNDataset
from utils.errors import UserError


def write_db(path, images: dict[bytes, tuple[np.ndarray, str]]) -> None:
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for key, (arr, fmt) in images.items():
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {"quality": 95}))
            txn.put(key, buf.getvalue())
    env.close()


def test_lsun_lmdb_reads_every_entry_with_its_category(tmp_path):
    rng = np.random.default_rng(0)
    flat = np.full((12, 20, 3), (200, 30, 90), np.uint8)
    bedrooms = {b"0a1b2c": (flat, "WEBP"), b"0a1b2d": (rng.integers(0, 255, (10, 10, 3), dtype=np.uint8), "WEBP"),
                b"ff00": (np.zeros((8, 8, 3), np.uint8), "JPEG")}
    write_db(tmp_path / "bedroom_train_lmdb", bedrooms)
    write_db(tmp_path / "tower_train_lmdb", {b"k1": (np.full((9, 9, 3), 255, np.uint8), "WEBP")})
    ds = LSUNDataset(tmp_path, size=8)
    assert ds.classes == ["bedroom", "tower"] and len(ds) == 4 and ds.num_classes == 2
    labels = [ds[i]["label"] for i in range(4)]
    assert labels == [0, 0, 0, 1]
    first = LSUNDataset(tmp_path, categories="bedroom")[0]      # key order: 0a1b2c first, lossless webp
    assert first["image"].shape == (3, 12, 20) and first["image"].dtype == torch.float32
    want = torch.tensor([200, 30, 90]).float() / 127.5 - 1
    assert torch.allclose(first["image"][:, 5, 5], want, atol=1e-6)
    assert first["path"].endswith("bedroom_train_lmdb/0a1b2c") and first["label"] is None
    assert ds[0]["image"].shape == (3, 8, 8)
    # survives pickling into a data-loader worker (the LMDB handle is reopened there)
    again = pickle.loads(pickle.dumps(ds))
    assert torch.equal(again[3]["image"], ds[3]["image"])


def test_lsun_lmdb_refuses_a_value_that_is_not_an_image(tmp_path):
    env = lmdb.open(str(tmp_path / "church_outdoor_val_lmdb"), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"bad", b"not an image")
    env.close()
    ds = LSUNDataset(tmp_path, split="val")
    with pytest.raises(UserError, match="not an image"):
        ds[0]

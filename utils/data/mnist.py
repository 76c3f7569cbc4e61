"""MNIST from its idx files (LeCun et al.), gzipped or not, in the original or torchvision's layout.

    <data-dir>/train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]
    <data-dir>/t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]
(or the same under <data-dir>/MNIST/raw/, where torchvision puts them). Fashion-MNIST uses the same
format and names: `mnist` reads it as well.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from utils.data.array_images import ArrayImageDataset
from utils.data.augmentations import Size
from utils.errors import UserError

SOURCE = "the four idx files from yann.lecun.com/exdb/mnist (or a mirror); unpack with `python -m utils.data.prepare mnist --from ARCHIVE`"
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An idx file: magic 0 0 <type> <ndim>, ndim big-endian int32 sizes, then the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise UserError(f"cannot read {path} ({err}): it is truncated or not gzip; download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise UserError(f"{path} is not an idx file (bad magic number): MNIST's files are "
                        "train-images-idx3-ubyte and friends")
    ndim = raw[3]
    shape = tuple(int(v) for v in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[raw[2]])
    expected = 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise UserError(f"{path} holds {len(raw)} bytes but its header says {expected}: it is truncated; "
                        "download it again")
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape)


def find_file(root: Path, stem: str) -> Path | None:
    for folder in (root, root / "MNIST" / "raw", root / "raw"):
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
            if (folder / name).is_file():
                return folder / name
    return None


class MNISTDataset(ArrayImageDataset):
    """Items are {"image": (1, size, size) in [-1, 1], "label": 0..9}; 60000 train / 10000 test images."""

    def __init__(self, data_dir: str | os.PathLike, split: str = "train", size: Size | None = None,
                 random_flip: bool = False):
        if split not in FILES:
            raise UserError(f"mnist has splits train and test, not '{split}'")
        root = Path(os.path.expanduser(str(data_dir)))
        paths = [find_file(root, stem) for stem in FILES[split]]
        missing = [stem for stem, p in zip(FILES[split], paths) if p is None]
        if missing:
            raise UserError(f"no {' or '.join(missing)}[.gz] in {root} (nor in its MNIST/raw): mnist reads {SOURCE}")
        images, labels = read_idx(paths[0]), read_idx(paths[1])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(f"{paths[0].name} holds {images.shape} and {paths[1].name} {labels.shape}: expected "
                            "(N, 28, 28) images and N labels")
        super().__init__(images, labels, [str(i) for i in range(10)], size=size, random_flip=random_flip)

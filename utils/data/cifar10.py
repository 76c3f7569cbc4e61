"""CIFAR-10 from its python batches (Krizhevsky 2009): pickles, read with an allow-list unpickler.

    <data-dir>/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch, batches.meta
(or those files directly in <data-dir>). Each batch is a pickled dict {b'data': (10000, 3072) uint8,
b'labels': [int]}. The unpickler rebuilds only numpy arrays and plain containers: a batch that names
any other global (os.system, eval, a class...) is refused before anything in it runs.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from utils.data.array_images import ArrayImageDataset
from utils.data.augmentations import Size
from utils.errors import UserError

SOURCE = ("the python version of CIFAR-10 (cifar-10-python.tar.gz from www.cs.toronto.edu/~kriz/cifar.html); unpack "
          "it with `python -m utils.data.prepare cifar10 --from cifar-10-python.tar.gz --data-dir DIR`")
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SPLITS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


class BatchUnpickler(pickle.Unpickler):
    """Only what a CIFAR batch holds: numpy's array reconstruction, dtypes and scalars."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
               ("__builtin__", "object"), ("builtins", "object")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 from Python 3 spells bytes: latin-1 only
            from utils.weights.pickles import _latin1_bytes

            return _latin1_bytes
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}")
        if module == "numpy.core.multiarray" and hasattr(np, "_core"):  # numpy 2 moved it (the batches predate it)
            module = "numpy._core.multiarray"
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it holds persistent ids")


def read_batch(path: Path) -> dict[str, Any]:
    """A batch as {str key: value}; a pickle that would import or call anything is a UserError."""
    try:
        with open(path, "rb") as f:
            raw = BatchUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise UserError(f"refusing {path}: {err}, which a CIFAR-10 batch never does (the file could run code); "
                        "download the batches again from the official site") from None
    except (EOFError, ValueError, TypeError, IndexError, AttributeError) as err:
        raise UserError(f"{path} is not a readable CIFAR-10 batch ({type(err).__name__}): it is truncated or "
                        "corrupt; download it again") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} holds a {type(raw).__name__}, not a CIFAR-10 batch dict")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in raw.items()}


def find_root(root: Path) -> Path:
    for folder in (root / "cifar-10-batches-py", root):
        if (folder / "test_batch").is_file() or (folder / "data_batch_1").is_file():
            return folder
    raise UserError(f"no CIFAR-10 batches (data_batch_1 ... data_batch_5, test_batch) in {root} or its "
                    f"cifar-10-batches-py folder: cifar10 reads {SOURCE}")


class CIFAR10Dataset(ArrayImageDataset):
    """Items are {"image": (3, size, size) in [-1, 1], "label": 0..9}; 50000 train / 10000 test images."""

    def __init__(self, data_dir: str | os.PathLike, split: str = "train", size: Size | None = None,
                 random_flip: bool = False):
        if split not in SPLITS:
            raise UserError(f"cifar10 has splits train and test, not '{split}'")
        root = find_root(Path(os.path.expanduser(str(data_dir))))
        missing = [n for n in SPLITS[split] if not (root / n).is_file()]
        if missing:
            raise UserError(f"{', '.join(missing)} missing from {root}: cifar10 reads {SOURCE}")
        images, labels = [], []
        for name in SPLITS[split]:
            batch = read_batch(root / name)
            data, lab = batch.get("data"), batch.get("labels")
            if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072 or lab is None \
                    or len(lab) != len(data):
                raise UserError(f"{root / name} has no (N, 3072) 'data' with N 'labels': not a CIFAR-10 batch")
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(lab))
        classes = CLASSES
        if (root / "batches.meta").is_file():
            names = read_batch(root / "batches.meta").get("label_names")
            if names:
                classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        super().__init__(np.concatenate(images), np.concatenate(labels), classes, size=size, random_flip=random_flip)

"""The standard datasets by name: `mnist`, `cifar10`, `celeba`, `ffhq`, `lsun` (see each reader's module).

Nothing is downloaded: each reads the files the user put in `data_dir` (train_gan's `--data-dir`), and a
missing or wrong layout says where the files come from and what is expected.
`python -m utils.data.prepare NAME --from ARCHIVE --data-dir DIR` unpacks a downloaded archive.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from torch.utils.data import Dataset

from utils.errors import UserError


def _reader(name: str) -> Callable[..., Dataset]:
    if name == "mnist":
        from utils.data.mnist import MNISTDataset as reader
    elif name == "cifar10":
        from utils.data.cifar10 import CIFAR10Dataset as reader
    elif name == "celeba":
        from utils.data.celeba import CelebADataset as reader
    elif name == "ffhq":
        from utils.data.ffhq import ffhq_dataset as reader
    else:
        from utils.data.lsun import LSUNDataset as reader
    return reader


NAMED = ("mnist", "cifar10", "celeba", "ffhq", "lsun")
SOURCES = {"mnist": "utils.data.mnist", "cifar10": "utils.data.cifar10", "celeba": "utils.data.celeba",
           "ffhq": "utils.data.ffhq", "lsun": "utils.data.lsun"}


def named_dataset(name: str, data_dir: str | os.PathLike | None = None, size: Any = None, **kw: Any) -> Dataset:
    """The reader of `name` over `data_dir`; options (split=, label_attr=, categories=...) go to the reader."""
    import importlib

    if data_dir is None:
        source = importlib.import_module(SOURCES[name]).SOURCE
        raise UserError(f"the {name} dataset is not downloaded here: pass --data-dir with {source}")
    from utils.data.datasets import _call

    return _call(_reader(name), name, data_dir=data_dir, size=size, **kw)


def builder(name: str) -> Callable[..., Dataset]:
    return lambda size=None, **kw: named_dataset(name, size=size, **kw)

"""LSUN scenes (Yu et al. 2015): the official LMDB databases or image folders exported from them.

    <data-dir>/bedroom_train_lmdb/data.mdb  (the official download, unzipped: keys -> webp / jpeg bytes)
    <data-dir>/bedroom_train/**/*.webp      (what lsun's `data.py export` writes from the LMDB)
    <data-dir>/church_outdoor_train_lmdb/ ...
A category's `<category>_<split>_lmdb` database is read with the `lmdb` package (read-only, no lock, opened
lazily in each data-loader worker); its keys are listed once, in the database's order. Otherwise the
`<category>_<split>` folder is read. With several categories, the label is the category.
"""
from __future__ import annotations

import os
from pathlib import Path

from torch.utils.data import Dataset

from utils.data.augmentations import Size
from utils.errors import UserError

SOURCE = ("LSUN's <category>_<split>_lmdb databases (e.g. bedroom_train_lmdb, from github.com/fyu/lsun's "
          "download.py, unzipped) or <category>_<split> image folders exported from them")


class LSUNDataset(Dataset):
    """Items are {"image": (3, size, size) in [-1, 1], "label": category index, "path": str}."""

    def __init__(self, data_dir: str | os.PathLike, categories: str | list[str] | None = None, split: str = "train",
                 size: Size | None = None, random_flip: bool = False):
        from utils.data.image_folder import find_images

        root = Path(os.path.expanduser(str(data_dir)))
        if not root.is_dir():
            raise UserError(f"no LSUN folder at {root}: lsun reads {SOURCE}")
        dbs = {p.name[: -len(split) - 6]: p for p in root.iterdir()
               if p.is_dir() and p.name.endswith(f"_{split}_lmdb") and (p / "data.mdb").is_file()}
        found = sorted({*dbs, *(p.name[: -len(split) - 1] for p in root.iterdir()
                                if p.is_dir() and p.name.endswith(f"_{split}"))})
        wanted = found if categories is None else ([categories] if isinstance(categories, str) else list(categories))
        missing = [c for c in wanted if c not in found]
        if missing or not wanted:
            raise UserError(f"no {(missing or ['<category>'])[0]}_{split} folder in {root} (found: "
                            f"{', '.join(found) or 'none'}): lsun reads {SOURCE}")
        self.classes = wanted
        self.items: list[tuple[Path, int] | tuple[Path, bytes, int]] = []
        for label, category in enumerate(wanted):
            if category in dbs:
                self.items += [(dbs[category], key, label) for key in lmdb_keys(dbs[category])]
            else:
                self.items += [(p, label) for p in find_images(root / f"{category}_{split}")]
        if not self.items:
            raise UserError(f"the {', '.join(wanted)} folders in {root} hold no images")
        from utils.data.augmentations import ImageTransform

        self.transform = ImageTransform(size=size, random_flip=random_flip)

    @property
    def num_classes(self) -> int:
        return len(self.classes) if len(self.classes) > 1 else 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        from utils.data.image_folder import load_rgb

        item = self.items[i]
        if len(item) == 3:
            db, key, label = item
            image, path = self._read_lmdb(db, key), f"{db}/{key.decode(errors='replace')}"
        else:
            path, label = item
            image, path = load_rgb(path), str(path)
        return {"image": self.transform(image), "label": label if len(self.classes) > 1 else None, "path": path}

    def _read_lmdb(self, db: Path, key: bytes):
        import io

        from PIL import Image

        with open_lmdb(db).begin(write=False) as txn:
            data = txn.get(key)
        if data is None:
            raise UserError(f"key {key!r} vanished from {db}: was the database changed while reading?")
        try:
            return Image.open(io.BytesIO(data)).convert("RGB")
        except Exception as e:
            raise UserError(f"entry {key!r} of {db} is not an image ({e}): LSUN values are webp / jpeg bytes") from None


_ENVS: dict[tuple[int, str], object] = {}
"""Open databases by (process id, path): lmdb allows one environment per file and process, and a handle
must not cross a fork, so each data-loader worker opens its own."""


def open_lmdb(db: Path):
    """The database read-only and lock-free (the official files are read by many readers at once)."""
    key = (os.getpid(), str(Path(db).resolve()))
    if key not in _ENVS:
        _ENVS[key] = _open(db)
    return _ENVS[key]


def _open(db: Path):
    try:
        import lmdb
    except ImportError:
        raise UserError("reading LSUN's LMDB databases needs the lmdb package: pip install lmdb") from None
    try:
        return lmdb.open(str(db), readonly=True, lock=False, readahead=False, meminit=False, max_readers=126)
    except lmdb.Error as e:
        raise UserError(f"cannot open the LMDB database {db} ({e}): lsun reads {SOURCE}") from None


def lmdb_keys(db: Path) -> list[bytes]:
    """Every key of the database, in its (sorted) order."""
    with open_lmdb(db).begin(write=False) as txn:
        return [bytes(k) for k in txn.cursor().iternext(keys=True, values=False)]

"""LSUN scenes (Yu et al. 2015) as exported image folders, one per category and split.

    <data-dir>/bedroom_train/**/*.webp      (what lsun's `data.py export` writes from the LMDB)
    <data-dir>/church_outdoor_train/ ...
The LMDB databases themselves are not read: export them with github.com/fyu/lsun's `python data.py export
<db> --out_dir <data-dir>/<category>_<split> --flat`. With several categories, the label is the category.
"""
from __future__ import annotations

import os
from pathlib import Path

from torch.utils.data import Dataset

from utils.data.augmentations import Size
from utils.errors import UserError

SOURCE = ("LSUN category folders <category>_<split> (e.g. bedroom_train) exported from the LMDBs of "
          "github.com/fyu/lsun with its `data.py export`")


class LSUNDataset(Dataset):
    """Items are {"image": (3, size, size) in [-1, 1], "label": category index, "path": str}."""

    def __init__(self, data_dir: str | os.PathLike, categories: str | list[str] | None = None, split: str = "train",
                 size: Size | None = None, random_flip: bool = False):
        from utils.data.image_folder import find_images

        root = Path(os.path.expanduser(str(data_dir)))
        if not root.is_dir():
            raise UserError(f"no LSUN folder at {root}: lsun reads {SOURCE}")
        if any(p.suffix == ".mdb" for p in root.rglob("*.mdb")):
            raise UserError(f"{root} holds LMDB files: export them to images first ({SOURCE})")
        found = sorted(p.name[: -len(split) - 1] for p in root.iterdir() if p.is_dir() and p.name.endswith(f"_{split}"))
        wanted = found if categories is None else ([categories] if isinstance(categories, str) else list(categories))
        missing = [c for c in wanted if c not in found]
        if missing or not wanted:
            raise UserError(f"no {(missing or ['<category>'])[0]}_{split} folder in {root} (found: "
                            f"{', '.join(found) or 'none'}): lsun reads {SOURCE}")
        self.classes = wanted
        self.items: list[tuple[Path, int]] = []
        for label, category in enumerate(wanted):
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

        path, label = self.items[i]
        return {"image": self.transform(load_rgb(path)), "label": label if len(self.classes) > 1 else None,
                "path": str(path)}

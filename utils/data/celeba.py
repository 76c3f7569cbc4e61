"""CelebA (Liu et al. 2015), aligned and cropped, with its 40 binary attributes and official splits.

    <data-dir>/img_align_celeba/000001.jpg ...
    <data-dir>/list_attr_celeba.txt       line 1: the count, line 2: the 40 names, then `name  1 -1 ...`
    <data-dir>/list_eval_partition.txt    optional: `name 0|1|2` (train / valid / test)
(or the same under <data-dir>/celeba/, torchvision's layout). `label_attr="Smiling"` makes that attribute
the class label (0 / 1), so a conditional GAN can train on it; every item also carries all 40.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from utils.data.augmentations import ImageTransform, Size
from utils.errors import UserError, did_you_mean

SOURCE = ("CelebA's 'Align&Cropped Images' (img_align_celeba.zip) and Anno/list_attr_celeba.txt from "
          "mmlab.ie.cuhk.edu.hk/projects/CelebA.html; unpack with `python -m utils.data.prepare celeba --from ARCHIVE`")
SPLITS = {"train": 0, "valid": 1, "test": 2}


def read_attributes(path: Path) -> tuple[list[str], dict[str, list[int]]]:
    """(the attribute names, {file name: 40 values in {0, 1}}) from list_attr_celeba.txt."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise UserError(f"{path} is not list_attr_celeba.txt: its first line is the image count, the second the "
                        "attribute names")
    names = lines[1].split()
    rows: dict[str, list[int]] = {}
    for lineno, line in enumerate(lines[2:], 3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1 or any(v not in ("1", "-1", "0") for v in parts[1:]):
            raise UserError(f"{path}:{lineno} should hold a file name and {len(names)} values of 1 / -1")
        rows[parts[0]] = [1 if v == "1" else 0 for v in parts[1:]]
    if int(lines[0]) != len(rows):
        raise UserError(f"{path} announces {lines[0].strip()} images but lists {len(rows)}: it is truncated")
    return names, rows


class CelebADataset(Dataset):
    """Items are {"image": (3, size, size) in [-1, 1], "attributes": (40,) long in {0, 1}, "label": int | None}."""

    def __init__(self, data_dir: str | os.PathLike, split: str = "train", size: Size | None = None,
                 label_attr: str | None = None, random_flip: bool = False):
        root = Path(os.path.expanduser(str(data_dir)))
        if not (root / "list_attr_celeba.txt").is_file() and (root / "celeba" / "list_attr_celeba.txt").is_file():
            root = root / "celeba"
        images, attr_file = root / "img_align_celeba", root / "list_attr_celeba.txt"
        if not images.is_dir() or not attr_file.is_file():
            raise UserError(f"{root} needs img_align_celeba/ and list_attr_celeba.txt: celeba reads {SOURCE}")
        if split not in (*SPLITS, "all"):
            raise UserError(f"celeba has splits train, valid, test and all, not '{split}'")
        self.attribute_names, rows = read_attributes(attr_file)
        names = sorted(rows)
        partition = root / "list_eval_partition.txt"
        if split != "all":
            if not partition.is_file():
                raise UserError(f"split '{split}' needs {partition} (CelebA's Eval/list_eval_partition.txt): add it or "
                                "pass split='all'")
            parts = dict(line.split()[:2] for line in partition.read_text().splitlines() if line.strip())
            names = [n for n in names if parts.get(n) == str(SPLITS[split])]
        missing = [n for n in names if not (images / n).is_file()]
        if missing:
            raise UserError(f"{len(missing)} images listed in {attr_file.name} are missing from {images} (e.g. "
                            f"{missing[0]}): unpack the whole img_align_celeba archive")
        if not names:
            raise UserError(f"no images of split '{split}' in {root}")
        self.root, self.names = images, names
        self.attributes = torch.tensor([rows[n] for n in names], dtype=torch.long)
        self.label_index = None
        if label_attr is not None:
            if label_attr not in self.attribute_names:
                raise UserError(f"CelebA has no attribute '{label_attr}': {did_you_mean(label_attr, self.attribute_names)}")
            self.label_index = self.attribute_names.index(label_attr)
        self.classes = [f"not {label_attr}", label_attr] if label_attr else []
        self.transform = ImageTransform(size=size, random_flip=random_flip)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        from utils.data.image_folder import load_rgb

        label = None if self.label_index is None else int(self.attributes[i, self.label_index])
        return {"image": self.transform(load_rgb(self.root / self.names[i])), "attributes": self.attributes[i],
                "label": label, "path": str(self.root / self.names[i])}

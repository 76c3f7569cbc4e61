"""Images inside a zip archive as a dataset (NVlabs' dataset_tool zips, FFHQ / AFHQ / any zipped folder).

Labels come from a `dataset.json` at the archive's root when it has one (NVlabs' format:
{"labels": [["00000/img00000000.png", 3], ...]}); else the images are unlabelled.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from utils.data.augmentations import ImageTransform, Size
from utils.data.image_folder import IMAGE_SUFFIXES
from utils.errors import UserError


class ZipImageDataset(Dataset):
    """Items are {"image": (3, H, W) in [-1, 1], "label": int | None, "path": name in the zip}."""

    def __init__(self, path: str | os.PathLike, size: Size | None = None, random_flip: bool = False,
                 channels: int = 3):
        self.path = Path(os.path.expanduser(str(path)))
        try:
            with zipfile.ZipFile(self.path) as zf:
                names = zf.namelist()
                meta = zf.read("dataset.json") if "dataset.json" in names else None
        except (zipfile.BadZipFile, OSError) as err:
            raise UserError(f"{self.path} is not a readable zip ({err}): it is truncated or not a zip") from None
        self.names = sorted(n for n in names if n.lower().endswith(IMAGE_SUFFIXES)
                            and not any(part.startswith((".", "__MACOSX")) for part in n.split("/")))
        if not self.names:
            raise UserError(f"no images in {self.path}: expected {', '.join(IMAGE_SUFFIXES)} files inside it")
        self.labels: list[int] | None = None
        if meta is not None:
            try:
                listed = dict(json.loads(meta).get("labels") or [])
            except (ValueError, TypeError, AttributeError) as err:
                raise UserError(f"dataset.json in {self.path} is not NVlabs' {{'labels': [[name, label], ...]}} "
                                f"({err})") from None
            if listed:
                missing = [n for n in self.names if n not in listed]
                if missing:
                    raise UserError(f"dataset.json in {self.path} has no label for {missing[0]}: every image needs one")
                self.labels = [int(listed[n]) for n in self.names]
        self.channels = channels
        self.transform = ImageTransform(size=size, random_flip=random_flip)
        self._zip: zipfile.ZipFile | None = None  # opened lazily, once per worker process

    @property
    def num_classes(self) -> int:
        return 0 if self.labels is None else max(self.labels) + 1

    def __len__(self) -> int:
        return len(self.names)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zip": None}

    def __getitem__(self, i: int) -> dict:
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        name = self.names[i]
        try:
            img = Image.open(io.BytesIO(self._zip.read(name))).convert("L" if self.channels == 1 else "RGB")
        except (UnidentifiedImageError, OSError) as err:
            raise UserError(f"cannot read {name} in {self.path} ({err}): the image is corrupt") from None
        return {"image": self.transform(img), "label": None if self.labels is None else self.labels[i], "path": name}

"""FFHQ (Karras et al. 2019) in the layouts it is shared in, at any resolution.

    <data-dir>/images1024x1024/00000/00000.png ...   the aligned 1024 images (69 folders of 1000)
    <data-dir>/thumbnails128x128/00000/00000.png ... the 128 thumbnails
    <data-dir>/*.png                                 any flat folder (e.g. a Kaggle resize)
    ffhq-256x256.zip                                 NVlabs' dataset_tool zip (--data-dir is the zip)
Images are resized to the training size; a folder with both 1024 and 128 images uses the smallest that
is at least that size (the thumbnails for 128 and below).
"""
from __future__ import annotations

import os
from pathlib import Path

from torch.utils.data import Dataset

from utils.data.augmentations import Size, as_hw
from utils.errors import UserError

SOURCE = ("FFHQ from github.com/NVlabs/ffhq-dataset (images1024x1024 or thumbnails128x128) or a dataset_tool zip; "
          "unpack an archive with `python -m utils.data.prepare ffhq --from ARCHIVE --data-dir DIR`")
LAYOUTS = (("thumbnails128x128", 128), ("images1024x1024", 1024))


def ffhq_dataset(data_dir: str | os.PathLike, size: Size | None = None, random_flip: bool = False,
                 split: str = "train") -> Dataset:
    """The images of `data_dir` (a folder in one of the layouts above, or a zip); unlabelled. FFHQ has one
    split (the 70k images): `split` must be 'train'."""
    from utils.data.image_folder import ImageFolderDataset, find_images
    from utils.data.zip_images import ZipImageDataset

    if split != "train":
        raise UserError(f"ffhq has one split, train (all 70k images), not '{split}'")
    root = Path(os.path.expanduser(str(data_dir)))
    if root.is_file() and root.suffix == ".zip":
        return ZipImageDataset(root, size=size, random_flip=random_flip)
    if not root.is_dir():
        raise UserError(f"no FFHQ folder or zip at {root}: ffhq reads {SOURCE}")
    side = None if size is None else max(as_hw(size))
    present = [(name, res) for name, res in LAYOUTS if (root / name).is_dir()]
    if present:
        fitting = [name for name, res in present if side is not None and res >= side]
        root = root / (fitting[0] if fitting else present[-1][0])
    if not find_images(root):
        raise UserError(f"no images in {root}: ffhq reads {SOURCE}")
    return ImageFolderDataset(root, size=size, random_flip=random_flip, captions=False, verify=False)

"""`get_dataset(name_or_path)`: a built-in dataset by name, or a folder of images by path."""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Callable

from torch.utils.data import Dataset

from utils.errors import UserError, did_you_mean


def _digits(size: int | None = None, **kw: Any) -> Dataset:
    from utils.data.digits import DigitsDataset  # imported on use: it needs scikit-learn

    return _call(DigitsDataset, "digits", size=32 if size is None else size, **kw)


BUILTINS: dict[str, Callable[..., Dataset]] = {"digits": _digits}

from utils.data.named import NAMED, builder  # noqa: E402 - the standard datasets read from --data-dir

BUILTINS.update({name: builder(name) for name in NAMED})


def available_datasets() -> list[str]:
    return sorted(BUILTINS)


def _call(cls: Callable[..., Dataset], what: str, **kw: Any) -> Dataset:
    """Build `cls(**kw)`, turning an option it does not take into a one-line UserError."""
    params = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kw) - set(params))
        if unknown:
            raise UserError(f"the {what} dataset has no option {', '.join(unknown)}: it takes "
                            f"{', '.join(params)}")
    return cls(**kw)


def get_dataset(name_or_path: str | os.PathLike, size: int | tuple[int, int] | None = None, **kw: Any) -> Dataset:
    """"digits" (and other built-ins) by name; an existing folder as an ImageFolderDataset.

    Extra keyword options go to the dataset (e.g. split="test" for digits; captions=,
    class_labels=, random_flip=, center_crop= for a folder).
    """
    name = str(name_or_path)
    if name in BUILTINS:
        return BUILTINS[name](size=size, **kw)
    path = Path(os.path.expanduser(name))
    if path.is_file() and path.suffix.lower() == ".zip":
        from utils.data.zip_images import ZipImageDataset

        return _call(ZipImageDataset, f"image zip {path}", path=path, size=size, **kw)
    if path.is_dir():
        from utils.data.image_folder import ImageFolderDataset

        return _call(ImageFolderDataset, f"image folder {path}", root=path, size=size, **kw)
    if path.exists():
        raise UserError(f"{path} is a file, not a dataset: pass a folder of images or a built-in dataset "
                        f"({', '.join(available_datasets())})")
    raise UserError(f"unknown dataset '{name}': it is neither a built-in dataset ({did_you_mean(name, BUILTINS)}) "
                    "nor an existing folder of images")

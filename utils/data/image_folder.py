"""A folder of images, with optional captions and class labels, as a torch Dataset.

Captions come from a `metadata.jsonl` (the Hugging Face imagefolder convention: one JSON object
per line with `file_name`, relative to the jsonl's folder, and a text column such as `text` or
`caption`; a jsonl may sit in any subfolder), else from a same-named `.txt` sidecar
(`cat.png` + `cat.txt`). Class labels are the first-level subfolder names, sorted.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from utils.data.augmentations import ImageTransform, Size
from utils.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
METADATA = "metadata.jsonl"
CAPTION_COLUMNS = ("text", "caption", "prompt")


def find_images(root: Path) -> list[Path]:
    """Every image under `root`, sorted; hidden files and folders (.cache, .ipynb_checkpoints) skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames
                  if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(found)


def read_metadata(root: Path, column: str | None = None) -> dict[Path, str]:
    """Captions from every metadata.jsonl under `root`, keyed by the resolved image path."""
    captions: dict[Path, str] = {}
    for meta in sorted(root.rglob(METADATA)):
        for lineno, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{meta}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{where} is not valid JSON ({err.msg}): each line must be one JSON object") from None
            if not isinstance(row, dict) or "file_name" not in row:
                raise UserError(f"{where} has no 'file_name': each line needs the image's path relative to "
                                "the metadata.jsonl folder")
            image = (meta.parent / row["file_name"]).resolve()
            if not image.is_file():
                raise UserError(f"{where} names '{row['file_name']}', which does not exist in {meta.parent}: "
                                "fix the file name or remove the line")
            text_column = column or next((c for c in CAPTION_COLUMNS if c in row), None)
            if text_column is not None and row.get(text_column) is not None:
                captions[image] = str(row[text_column])
    return captions


def load_rgb(path: Path) -> Image.Image:
    """Open an image as RGB, upright (EXIF orientation applied); a broken file is a UserError."""
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise UserError(f"cannot read image {path} ({err}): the file is corrupt or not an image; "
                        "remove or replace it") from None


def image_problem(path: str | os.PathLike) -> str | None:
    """Why `path` does not decode as an image (None when it does): opened and decoded in full (a JPEG at
    1/8 scale, which still reads every byte), so truncated and corrupt files are found before any work."""
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except Exception as err:  # noqa: BLE001 - whatever PIL raises, the file is unusable
        from utils.errors import short_reason

        return short_reason(err, 80)
    return None


def unreadable_images(paths: list[Path]) -> list[tuple[Path, str]]:
    """(path, why) of each file of `paths` that does not decode (`image_problem`)."""
    return [(p, why) for p in paths if (why := image_problem(p)) is not None]


def check_images(paths: list[Path], flag: str = "input") -> None:
    """Refuse, before any work, a list of image files of which one does not decode, naming it."""
    bad = unreadable_images(paths)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise UserError(f"{flag} {bad[0][0]} is not a readable image ({bad[0][1]}){more}: remove or replace it; "
                        "nothing was written")


class ImageFolderDataset(Dataset):
    """Items are {"image": 3xHxW in [-1, 1], "caption": str | None, "label": int | None, "path": str}.

    With `verify` (the default) every file is decoded once when the dataset is made: files that do
    not decode are skipped, with one warning line that counts and names them (`skipped`), so a broken
    file never stops a training at the step that reaches it; a folder of which none decodes is an error.
    """

    def __init__(self, root: str | os.PathLike, size: Size | None = None, center_crop: bool = True,
                 random_flip: bool = False, captions: bool = True, class_labels: bool = False,
                 caption_column: str | None = None, verify: bool = True):
        self.root = Path(os.path.expanduser(str(root)))
        if not self.root.exists():
            raise UserError(f"image folder not found: {self.root}: check the path")
        if not self.root.is_dir():
            raise UserError(f"{self.root} is a file, not a folder: pass the folder that holds the images")
        self.paths = find_images(self.root)
        if not self.paths:
            raise UserError(f"no images in {self.root}: expected files ending in {', '.join(IMAGE_SUFFIXES)} "
                            "(searched recursively)")
        self.skipped: list[tuple[Path, str]] = unreadable_images(self.paths) if verify else []
        if self.skipped:
            if len(self.skipped) == len(self.paths):
                raise UserError(f"none of the {len(self.paths)} images in {self.root} can be read (e.g. "
                                f"{self.skipped[0][0].name}: {self.skipped[0][1]}): check the folder")
            from utils.errors import warn_user

            names = ", ".join(p.name for p, _ in self.skipped[:3]) + (", ..." if len(self.skipped) > 3 else "")
            warn_user(f"skipped {len(self.skipped)} of {len(self.paths)} images in {self.root} that cannot be "
                      f"read ({names}; first: {self.skipped[0][1]}): remove or replace them to use them")
            bad = {p for p, _ in self.skipped}
            self.paths = [p for p in self.paths if p not in bad]
        self.transform = ImageTransform(size=size, center_crop=center_crop, random_flip=random_flip)
        self.captions: list[str | None] = [None] * len(self.paths)
        if captions:
            listed = read_metadata(self.root, caption_column)
            for i, p in enumerate(self.paths):
                sidecar = p.with_suffix(".txt")
                if p.resolve() in listed:
                    self.captions[i] = listed[p.resolve()]
                elif sidecar.is_file():
                    self.captions[i] = sidecar.read_text(encoding="utf-8").strip()
        self.classes: list[str] = []
        self.labels: list[int] | None = None
        if class_labels:
            self._label_by_subfolder()

    def _label_by_subfolder(self) -> None:
        tops = [p.relative_to(self.root).parts for p in self.paths]
        loose = [p for p, parts in zip(self.paths, tops) if len(parts) == 1]
        if loose:
            raise UserError(f"class labels come from first-level subfolders, but {loose[0].name} sits directly in "
                            f"{self.root}: move each image into a folder named for its class")
        self.classes = sorted({parts[0] for parts in tops})
        index = {c: i for i, c in enumerate(self.classes)}
        self.labels = [index[parts[0]] for parts in tops]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        path = self.paths[i]
        return {"image": self.transform(load_rgb(path)),
                "caption": self.captions[i],
                "label": None if self.labels is None else self.labels[i],
                "path": str(path)}

    def __repr__(self) -> str:
        captioned = sum(c is not None for c in self.captions)
        return (f"ImageFolderDataset({str(self.root)!r}, {len(self)} images, {captioned} captions, "
                f"{len(self.classes)} classes)")

    @property
    def num_classes(self) -> int:
        return len(self.classes)


"""The CO3D-derived layout the voxel VAE-GAN trains on, and its sequence metadata and pose files.

    <category>/                                   e.g. chair/ (or train/chair/ after a split)
      <sequence>_processed/
        sequence_meta.json                        frames, voxel file, category (written by preprocess)
        poses/frame000001.json ...                one CO3D viewpoint per frame (written by extract_poses)
      <sequence>_dataset_instance/
        images/frame000001.jpg ...                RGB frames
        masks/frame000001.png ...                 foreground masks (optional here: the background is kept
                                                  when a frame has none)
        depths/  depth_masks/                     CO3D depth maps (kept in the layout, not read by training)
        <sequence>.binvox                         the shape's occupancy grid

sequence_meta.json: {"sequence_name", "category", "voxel": "<sequence>.binvox", "frames": [{"frame_number",
"image", "mask", "depth", "depth_mask" (paths inside the instance folder), "pose" (inside the processed
folder)}]}. Without "frames", images and poses are paired by file stem.

A pose file: {"R": 3x3, "T": 3, "focal_length": 2, "principal_point": 2, "intrinsics_format",
"image_size": [height, width]}: CO3D's `viewpoint` (see utils.data.co3d.cameras).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from utils.errors import UserError
from utils.io import atomic_path

__all__ = ["PROCESSED", "INSTANCE", "META", "Frame", "Sequence", "resolve_category", "list_sequences",
           "read_sequence", "write_sequence_meta", "read_pose", "write_pose", "IMAGE_SUFFIXES", "LAYOUT_HINT"]

PROCESSED = "_processed"
INSTANCE = "_dataset_instance"
META = "sequence_meta.json"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LAYOUT_HINT = ("a category folder holds <sequence>_processed/{sequence_meta.json, poses/} and "
               "<sequence>_dataset_instance/{images/, masks/, depths/, depth_masks/, <sequence>.binvox} per "
               "sequence (python -m utils.data.co3d.preprocess makes it from a CO3D download)")


@dataclass
class Frame:
    """One view of a sequence."""

    number: int
    """CO3D frame number."""
    image: Path
    """The RGB image."""
    pose: Path
    """Its pose .json."""
    mask: Path | None = None
    """Its foreground mask, if there is one."""


@dataclass
class Sequence:
    """One object: its views and its voxel grid."""

    name: str
    """The sequence name (the folder names without their suffixes)."""
    processed: Path
    """<name>_processed/"""
    instance: Path
    """<name>_dataset_instance/"""
    voxel: Path
    """The .binvox file."""
    frames: list[Frame] = field(default_factory=list)
    """Its views, in frame order."""
    category: str = ""
    """The object category, from sequence_meta.json."""


def resolve_category(root: str | Path, obj: str | None = None) -> Path:
    """The category folder for `--input_dir`: `root` itself, or `root/<obj>` when `root` is its parent."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"input folder '{root}' not found: give a category folder in the CO3D layout ({LAYOUT_HINT})")
    if any(p.name.endswith(PROCESSED) for p in root.iterdir()):
        return root
    if obj and (root / obj).is_dir():
        return root / obj
    splits = [s for s in ("train", "test", "val") if (root / s).is_dir()]
    hint = f" (it holds {', '.join(s + '/' for s in splits)}: pass {root / splits[0]}/<category>)" if splits else ""
    raise UserError(f"'{root}' is not in the CO3D layout: it has no <sequence>{PROCESSED}/ folder{hint}; "
                    f"{LAYOUT_HINT}")


def _missing(seq_name: str, processed: Path, instance: Path) -> list[str]:
    missing = []
    if not instance.is_dir():
        return [f"{instance.name}/"]
    if not (processed / META).is_file():
        missing.append(f"{processed.name}/{META}")
    if not (processed / "poses").is_dir():
        missing.append(f"{processed.name}/poses/")
    if not (instance / "images").is_dir():
        missing.append(f"{instance.name}/images/")
    if not (instance / f"{seq_name}.binvox").is_file() and not any(instance.glob("*.binvox")):
        missing.append(f"{instance.name}/{seq_name}.binvox")
    return missing


def read_sequence(processed: Path) -> Sequence:
    """One sequence from its _processed folder (the instance folder sits beside it)."""
    name = processed.name[: -len(PROCESSED)]
    instance = processed.with_name(name + INSTANCE)
    missing = _missing(name, processed, instance)
    if missing:
        raise UserError(f"sequence '{name}' in {processed.parent} is not in the CO3D layout: missing "
                        f"{', '.join(missing)}; {LAYOUT_HINT}")
    try:
        meta = json.loads((processed / META).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{processed / META} is not valid JSON ({err.msg if hasattr(err, 'msg') else err}): "
                        "rewrite it with python -m utils.data.co3d.preprocess") from None
    voxel = instance / meta.get("voxel", f"{name}.binvox")
    if not voxel.is_file():
        found = sorted(instance.glob("*.binvox"))
        if not found:
            raise UserError(f"sequence '{name}': its voxel file {voxel} is missing; {LAYOUT_HINT}")
        voxel = found[0]
    frames = []
    if meta.get("frames"):
        for rec in meta["frames"]:
            mask = instance / rec["mask"] if rec.get("mask") else None
            frames.append(Frame(int(rec.get("frame_number", len(frames))), instance / rec["image"],
                                processed / rec["pose"], mask if mask is not None and mask.is_file() else None))
    else:  # pair images/ and poses/ by stem
        poses = {p.stem: p for p in (processed / "poses").glob("*.json")}
        for i, img in enumerate(sorted(p for p in (instance / "images").iterdir()
                                       if p.suffix.lower() in IMAGE_SUFFIXES)):
            if img.stem in poses:
                masks = list((instance / "masks").glob(img.stem + ".*")) if (instance / "masks").is_dir() else []
                digits = "".join(ch for ch in img.stem if ch.isdigit())
                frames.append(Frame(int(digits) if digits else i, img, poses[img.stem], masks[0] if masks else None))
    absent = [f for f in frames if not f.image.is_file() or not f.pose.is_file()]
    if absent:
        f = absent[0]
        what = f.image if not f.image.is_file() else f.pose
        raise UserError(f"sequence '{name}': {len(absent)} frame(s) name files that do not exist (first: {what}); "
                        "rewrite sequence_meta.json with python -m utils.data.co3d.preprocess")
    if not frames:
        raise UserError(f"sequence '{name}' has no frame with both an image in {instance.name}/images/ and a pose in "
                        f"{processed.name}/poses/")
    return Sequence(name, processed, instance, voxel, frames, meta.get("category", processed.parent.name))


def list_sequences(category_dir: str | Path) -> list[Sequence]:
    """Every sequence of a category folder, sorted by name; a folder not in the layout names what is missing."""
    category_dir = Path(category_dir)
    if not category_dir.is_dir():
        raise UserError(f"category folder '{category_dir}' not found: give a folder in the CO3D layout ({LAYOUT_HINT})")
    processed = sorted(p for p in category_dir.iterdir() if p.is_dir() and p.name.endswith(PROCESSED))
    if not processed:
        raise UserError(f"'{category_dir}' is not in the CO3D layout: it has no <sequence>{PROCESSED}/ folder; "
                        f"{LAYOUT_HINT}")
    return [read_sequence(p) for p in processed]


def write_sequence_meta(processed: str | Path, meta: dict) -> Path:
    processed = Path(processed)
    with atomic_path(processed / META) as tmp:
        tmp.write_text(json.dumps(meta, indent=1))
    return processed / META


def write_pose(path: str | Path, R, T, focal_length, principal_point, image_size: tuple[int, int],
               intrinsics_format: str = "ndc_isotropic") -> Path:
    """One frame's viewpoint in CO3D's fields (R, T in PyTorch3D's convention); image_size is (height, width)."""
    def plain(x):
        return x.tolist() if hasattr(x, "tolist") else [plain(v) for v in x] if isinstance(x, (list, tuple)) else x

    rec = {"R": plain(R), "T": plain(T), "focal_length": plain(focal_length),
           "principal_point": plain(principal_point), "intrinsics_format": intrinsics_format,
           "image_size": [int(image_size[0]), int(image_size[1])]}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(rec))
    return Path(path)


def read_pose(path: str | Path) -> dict:
    """A pose file as {R (3x3), T (3), focal_length, principal_point, intrinsics_format, image_size} lists."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"pose file {path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"pose file {path} is not valid JSON: expected CO3D viewpoint fields R, T, focal_length, "
                        "principal_point") from None
    rec = rec.get("viewpoint", rec)  # a raw CO3D frame annotation works too
    if not isinstance(rec, dict) or "R" not in rec or "T" not in rec:
        raise UserError(f"pose file {path} has no R and T: expected CO3D viewpoint fields R, T, focal_length, "
                        "principal_point")
    R, T = rec["R"], rec["T"]
    if len(R) != 3 or any(len(r) != 3 for r in R) or len(T) != 3:
        raise UserError(f"pose file {path}: R must be 3x3 and T of length 3")
    rec.setdefault("focal_length", [1.0, 1.0])
    rec.setdefault("principal_point", [0.0, 0.0])
    rec.setdefault("intrinsics_format", "ndc_isotropic")
    return rec

"""A CO3D download to the training layout: voxels, poses, frames and sequence_meta.json per sequence.

    python -m utils.data.co3d.preprocess --co3d_dir CO3D/chair --output_dir data/chair [--cube_len 32] [--copy]

Reads the CO3D category folder (<sequence>/{images, masks, depths, depth_masks, pointcloud.ply} and
frame_annotations.jgz) and writes, for each sequence that has a point cloud and annotated frames:

    <output_dir>/<sequence>_processed/{sequence_meta.json, poses/}      (metadata, extract_poses)
    <output_dir>/<sequence>_dataset_instance/{images, masks, depths, depth_masks, <sequence>.binvox}

The frame folders are linked (symbolic links) unless --copy; the .binvox comes from pointcloud.ply
(utils.data.co3d.ply2voxel). Then python -m utils.data.co3d.split makes train/val/test folders.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from utils.data.co3d.extract_poses import extract_poses, frames_by_sequence, pose_name, read_frame_annotations
from utils.data.co3d.layout import INSTANCE, PROCESSED, write_sequence_meta
from utils.data.co3d.ply2voxel import ply_to_binvox
from utils.errors import UserError

__all__ = ["preprocess_sequence", "preprocess_category", "sequence_meta"]

FRAME_DIRS = ("images", "masks", "depths", "depth_masks")


def _rel(path: str, seq: str) -> str:
    """A CO3D annotation path ('chair/<seq>/images/frame000001.jpg') relative to the sequence folder."""
    parts = Path(path).parts
    return str(Path(*parts[parts.index(seq) + 1:])) if seq in parts else str(Path(*parts[-2:]))


def sequence_meta(name: str, category: str, frames: list[dict], instance: Path, cube_len: int) -> dict:
    """sequence_meta.json of one sequence: its frames that have an image on disk."""
    records = []
    for f in frames:
        if not f.get("viewpoint") or not f.get("image"):
            continue
        image = _rel(f["image"]["path"], name)
        if not (instance / image).exists():
            continue
        rec = {"frame_number": int(f["frame_number"]), "image": image, "pose": f"poses/{pose_name(f)}"}
        for key, field in (("mask", "mask"), ("depth", "depth")):
            if (f.get(field) or {}).get("path"):
                rec[key] = _rel(f[field]["path"], name)
        if (f.get("depth") or {}).get("mask_path"):
            rec["depth_mask"] = _rel(f["depth"]["mask_path"], name)
        records.append(rec)
    return {"sequence_name": name, "category": category, "voxel": f"{name}.binvox", "cube_len": cube_len,
            "frames": records, "source": "CO3D"}


def _link_or_copy(src: Path, dst: Path, copy: bool) -> None:
    if dst.exists() or dst.is_symlink():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copytree(src, dst)
        return
    try:
        os.symlink(src.resolve(), dst, target_is_directory=True)
    except OSError:
        shutil.copytree(src, dst)


def preprocess_sequence(seq_dir: Path, frames: list[dict], output_dir: Path, category: str, cube_len: int = 32,
                        copy: bool = False) -> dict:
    """One CO3D sequence folder into the layout; returns its metadata."""
    name = seq_dir.name
    ply = seq_dir / "pointcloud.ply"
    if not ply.is_file():
        raise UserError(f"sequence {seq_dir} has no pointcloud.ply: CO3D ships one per sequence (or skip it with "
                        "--sequences)")
    if not (seq_dir / "images").is_dir():
        raise UserError(f"sequence {seq_dir} has no images/ folder")
    instance = output_dir / f"{name}{INSTANCE}"
    for sub in FRAME_DIRS:
        if (seq_dir / sub).is_dir():
            _link_or_copy(seq_dir / sub, instance / sub, copy)
    ply_to_binvox(ply, instance / f"{name}.binvox", cube_len)
    extract_poses(frames, output_dir, {name})
    meta = sequence_meta(name, category, frames, instance, cube_len)
    if not meta["frames"]:
        raise UserError(f"sequence {name}: no annotated frame has its image in {seq_dir / 'images'}")
    write_sequence_meta(output_dir / f"{name}{PROCESSED}", meta)
    return meta


def preprocess_category(co3d_dir: str | Path, output_dir: str | Path, cube_len: int = 32, copy: bool = False,
                        sequences: list[str] | None = None, min_frames: int = 1) -> list[str]:
    co3d_dir, output_dir = Path(co3d_dir), Path(output_dir)
    ann = co3d_dir / "frame_annotations.jgz"
    if not ann.is_file() and (co3d_dir / "frame_annotations.json").is_file():
        ann = co3d_dir / "frame_annotations.json"
    by_seq = frames_by_sequence(read_frame_annotations(ann))
    names = sequences or [n for n in by_seq if (co3d_dir / n / "pointcloud.ply").is_file()]
    unknown = [n for n in names if n not in by_seq]
    if unknown:
        raise UserError(f"sequence '{unknown[0]}' has no frames in {ann}")
    if not names:
        raise UserError(f"no sequence of {co3d_dir} has both frames in {ann.name} and a pointcloud.ply")
    done = []
    for name in names:
        if len(by_seq[name]) < min_frames:
            continue
        preprocess_sequence(co3d_dir / name, by_seq[name], output_dir, co3d_dir.name, cube_len, copy)
        done.append(name)
    return done


def main(argv: list[str] | None = None) -> int:
    from utils.cli import ArgumentParser

    p = ArgumentParser(prog="python -m utils.data.co3d.preprocess", description=__doc__.split("\n\n")[0])
    p.add_argument("--co3d_dir", required=True, help="a CO3D category folder (with frame_annotations.jgz)")
    p.add_argument("--output_dir", required=True, help="the category folder to write")
    p.add_argument("--cube_len", type=int, default=32, help="voxel grid resolution")
    p.add_argument("--sequences", nargs="*", default=None, help="only these sequences")
    p.add_argument("--min_frames", type=int, default=1, help="skip sequences with fewer annotated frames")
    p.add_argument("--copy", action="store_true", help="copy the frame folders instead of linking them")
    a = p.parse_args(argv)
    if not Path(a.co3d_dir).is_dir():
        raise UserError(f"--co3d_dir {a.co3d_dir} not found: give a CO3D category folder such as CO3D/chair")
    done = preprocess_category(a.co3d_dir, a.output_dir, a.cube_len, a.copy, a.sequences, a.min_frames)
    print(f"{len(done)} sequences -> {a.output_dir} (next: python -m utils.data.co3d.split --input_dir "
          f"{a.output_dir} --output_dir <root>)")
    return 0


if __name__ == "__main__":
    from utils.errors import cli_errors

    with cli_errors("utils.data.co3d.preprocess"):
        sys.exit(main())

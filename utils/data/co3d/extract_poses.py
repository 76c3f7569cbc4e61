"""Camera poses from CO3D frame annotations: one pose .json per frame, per sequence.

    python -m utils.data.co3d.extract_poses --annotations chair/frame_annotations.jgz --output_dir processed/chair

Reads CO3D's frame_annotations.jgz (gzipped JSON; a plain .json works too): a list of frames with
sequence_name, frame_number, image {path, size} and viewpoint {R, T, focal_length, principal_point,
intrinsics_format}. Writes <output_dir>/<sequence>_processed/poses/frame<number:06d>.json, each the
frame's viewpoint and image size (utils.data.co3d.layout.write_pose).
"""
from __future__ import annotations

import gzip
import json
import sys
from collections import defaultdict
from pathlib import Path

from utils.data.co3d.layout import PROCESSED, write_pose
from utils.errors import UserError

__all__ = ["read_frame_annotations", "frames_by_sequence", "extract_poses", "pose_name"]


def read_frame_annotations(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"frame annotations {path} not found: CO3D keeps them as <category>/frame_annotations.jgz")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix in (".jgz", ".gz") else path.read_bytes()
        data = json.loads(raw)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read frame annotations {path} ({' '.join(str(err).split())[:80]}): expected "
                        "CO3D's gzipped JSON list of frames") from None
    if not isinstance(data, list) or (data and not {"sequence_name", "frame_number"} <= set(data[0])):
        raise UserError(f"{path} is not a CO3D frame annotation list (no sequence_name / frame_number)")
    return data


def frames_by_sequence(annotations: list[dict]) -> dict[str, list[dict]]:
    seqs: dict[str, list[dict]] = defaultdict(list)
    for frame in annotations:
        seqs[frame["sequence_name"]].append(frame)
    return {k: sorted(v, key=lambda f: int(f["frame_number"])) for k, v in sorted(seqs.items())}


def pose_name(frame: dict) -> str:
    return f"frame{int(frame['frame_number']):06d}.json"


def extract_poses(annotations: list[dict], output_dir: str | Path, sequences: set[str] | None = None) -> dict[str, int]:
    """Write the pose files; returns {sequence: frames written}. Frames without a viewpoint are skipped."""
    written: dict[str, int] = {}
    for name, frames in frames_by_sequence(annotations).items():
        if sequences is not None and name not in sequences:
            continue
        n = 0
        for frame in frames:
            vp = frame.get("viewpoint")
            if not vp or "R" not in vp or "T" not in vp:
                continue
            size = (frame.get("image") or {}).get("size") or [0, 0]
            write_pose(Path(output_dir) / f"{name}{PROCESSED}" / "poses" / pose_name(frame), vp["R"], vp["T"],
                       vp.get("focal_length", [1.0, 1.0]), vp.get("principal_point", [0.0, 0.0]), tuple(size),
                       vp.get("intrinsics_format", "ndc_norm_image_bounds"))
            n += 1
        written[name] = n
    return written


def main(argv: list[str] | None = None) -> int:
    from utils.cli import ArgumentParser

    p = ArgumentParser(prog="python -m utils.data.co3d.extract_poses", description=__doc__.split("\n\n")[0])
    p.add_argument("--annotations", required=True, help="CO3D <category>/frame_annotations.jgz")
    p.add_argument("--output_dir", required=True, help="the processed category folder")
    p.add_argument("--sequences", nargs="*", default=None, help="only these sequences")
    a = p.parse_args(argv)
    written = extract_poses(read_frame_annotations(a.annotations), a.output_dir,
                            set(a.sequences) if a.sequences else None)
    if not written:
        raise UserError(f"no frames of the asked sequences in {a.annotations}")
    print(f"{sum(written.values())} poses of {len(written)} sequences -> {a.output_dir}")
    return 0


if __name__ == "__main__":
    from utils.errors import cli_errors

    with cli_errors("utils.data.co3d.extract_poses"):
        sys.exit(main())

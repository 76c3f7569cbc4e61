"""Training clips from a folder of videos or a metadata.jsonl of video paths.

    data/clips/                 a.mp4  b.webm  c.gif  d/ (a folder of frames)  ...
    data/metadata.jsonl         {"file_name": "a.mp4", "fps": 24, "motion_bucket_id": 127}   (one line per video)

`file_name` (or `video` / `path`) is relative to the jsonl's folder; `fps` overrides the file's rate
(and gives frame folders theirs), `motion_bucket_id` is the clip's motion conditioning when known.
Every item is `num_frames` frames sampled from the start (every `stride`-th, or resampled to `fps`),
scaled to cover `size` and center-cropped: {"video": (T, 3, H, W) in [-1, 1], "fps": ..., "motion_bucket_id": ...}.
With `verify` (the default) every video is probed when the dataset is made (`utils.data.video.video_problem`):
those that do not decode are skipped with one warning line that counts and names them (`skipped`), so a
broken file does not stop a training at the step that reaches it; data of which none decodes is an error.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from torch.utils.data import Dataset

from utils.data.video import ANIMATED_SUFFIXES, FRAME_SUFFIXES, VIDEO_FILE_SUFFIXES, read_video
from utils.errors import UserError


def _entries(source: Path) -> list[dict]:
    if source.is_file():
        if source.suffix != ".jsonl":
            raise UserError(f"{source} is not a metadata.jsonl: pass a folder of videos or a .jsonl of video paths")
        entries = []
        for n, line in enumerate(source.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"{source} line {n} is not JSON: each line must be an object like "
                                '{"file_name": "a.mp4"}') from None
            name = row.get("file_name") or row.get("video") or row.get("path")
            if not name:
                raise UserError(f"{source} line {n} names no video: give a file_name (or video / path) key")
            path = Path(name) if os.path.isabs(name) else source.parent / name
            entries.append({"path": path, "fps": row.get("fps"), "motion_bucket_id": row.get("motion_bucket_id")})
        return entries
    if not source.is_dir():
        raise UserError(f"video data not found: {source}: pass a folder of videos or a metadata.jsonl")
    if (source / "metadata.jsonl").is_file():
        return _entries(source / "metadata.jsonl")
    found = []
    for p in sorted(source.iterdir()):
        if p.is_file() and p.suffix.lower() in VIDEO_FILE_SUFFIXES + ANIMATED_SUFFIXES:
            found.append({"path": p, "fps": None, "motion_bucket_id": None})
        elif p.is_dir() and any(f.suffix.lower() in FRAME_SUFFIXES for f in p.iterdir()):
            found.append({"path": p, "fps": None, "motion_bucket_id": None})
    return found


class VideoClips(Dataset):
    """Clips of the videos under `source` (a folder or a metadata.jsonl); see the module docstring."""

    def __init__(self, source: str | os.PathLike, num_frames: int, size: tuple[int, int], stride: int | None = None,
                 fps: float | None = None, folder_fps: float = 8.0, verify: bool = True):
        self.source = Path(os.path.expanduser(str(source)))
        self.entries = _entries(self.source)
        if not self.entries:
            raise UserError(f"no videos in {self.source}: expected {', '.join(VIDEO_FILE_SUFFIXES + ANIMATED_SUFFIXES)} "
                            "files, frame folders, or a metadata.jsonl")
        missing = [str(e["path"]) for e in self.entries if not e["path"].exists()]
        if missing:
            raise UserError(f"{len(missing)} video(s) listed in {self.source} do not exist (first: {missing[0]})")
        self.num_frames, self.size, self.stride, self.fps, self.folder_fps = num_frames, tuple(size), stride, fps, folder_fps
        self.skipped: list[tuple[Path, str]] = self._unreadable(folder_fps) if verify else []
        if self.skipped:
            if len(self.skipped) == len(self.entries):
                raise UserError(f"none of the {len(self.entries)} videos in {self.source} can be read (e.g. "
                                f"{self.skipped[0][0].name}: {self.skipped[0][1]}): check the data")
            from utils.errors import warn_user

            names = ", ".join(p.name for p, _ in self.skipped[:3]) + (", ..." if len(self.skipped) > 3 else "")
            warn_user(f"skipped {len(self.skipped)} of {len(self.entries)} videos in {self.source} that cannot be "
                      f"read ({names}; first: {self.skipped[0][1]}): remove or replace them to use them")
            bad = {p for p, _ in self.skipped}
            self.entries = [e for e in self.entries if e["path"] not in bad]

    def _unreadable(self, folder_fps: float) -> list[tuple[Path, str]]:
        """(path, why) of each video that does not decode (`utils.data.video.video_problem`), probed in
        threads (each probe is mostly an ffmpeg process)."""
        from concurrent.futures import ThreadPoolExecutor

        from utils.data.video import video_problem

        paths = [e["path"] for e in self.entries]
        rates = [float(e["fps"] or folder_fps) for e in self.entries]
        with ThreadPoolExecutor(max_workers=min(8, len(paths))) as pool:
            whys = list(pool.map(video_problem, paths, rates))
        return [(p, why) for p, why in zip(paths, whys) if why is not None]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict:
        e = self.entries[i]
        clip = read_video(e["path"], num_frames=self.num_frames, stride=self.stride, fps=self.fps, size=self.size,
                          folder_fps=float(e["fps"] or self.folder_fps))
        rate = float(e["fps"]) if e["fps"] and self.fps is None and self.stride is None else clip.fps
        return {"video": clip.frames * 2 - 1, "fps": rate, "motion_bucket_id": e["motion_bucket_id"]}


__all__ = ["VideoClips"]

"""Writing frame lists to video files, atomically (written next to the target, then renamed).

    .mp4   H.264 (libx264) in yuv420p with the index at the front (`+faststart`): plays in browsers
    .webm  VP9 (libvpx-vp9) in yuv420p
    .gif   PIL, looping; GIF delays are whole hundredths of a second, so fps is approximate
    .webp  PIL animated WebP, looping

mp4 and webm go through the ffmpeg binary that imageio-ffmpeg ships. yuv420p needs even sides:
odd frames are padded by one edge pixel rather than rescaled. A folder that cannot be written, or
an encoder that fails, is one UserError line, and no file is left behind.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from utils.errors import UserError, short_reason
from utils.io import atomic_path

VIDEO_FILE_SUFFIXES = (".mp4", ".webm", ".gif", ".webp")
_CODECS = {".mp4": ("libx264", ["-movflags", "+faststart", "-preset", "medium", "-crf", "18"]),
           ".webm": ("libvpx-vp9", ["-b:v", "0", "-crf", "32", "-deadline", "good"])}


def _even(frame: Image.Image) -> np.ndarray:
    a = np.asarray(frame.convert("RGB"))
    h, w = a.shape[:2]
    return np.pad(a, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _write_ffmpeg(frames: Sequence[Image.Image], tmp: Path, fps: float, suffix: str) -> None:
    import imageio_ffmpeg

    codec, params = _CODECS[suffix]
    first = _even(frames[0])
    h, w = first.shape[:2]
    writer = imageio_ffmpeg.write_frames(str(tmp), (w, h), fps=fps, codec=codec, pix_fmt_in="rgb24",
                                         pix_fmt_out="yuv420p", quality=None, macro_block_size=1,
                                         ffmpeg_log_level="error",
                                         output_params=params)
    writer.send(None)  # start ffmpeg
    try:
        for f in frames:
            a = _even(f)
            if a.shape[:2] != (h, w):
                raise UserError(f"every frame of a video must have the same size: got {w}x{h} and "
                                f"{a.shape[1]}x{a.shape[0]}")
            writer.send(np.ascontiguousarray(a))
    finally:
        writer.close()


def _write_pil(frames: Sequence[Image.Image], tmp: Path, fps: float, suffix: str) -> None:
    first, *rest = [f.convert("RGB") for f in frames]
    duration = max(1, int(round(1000 / fps)))
    if suffix == ".gif":
        first.save(tmp, format="GIF", save_all=True, append_images=rest, duration=duration, loop=0)
    else:
        first.save(tmp, format="WEBP", save_all=True, append_images=rest, duration=duration, loop=0, quality=90)


def write_video(frames: Sequence[Image.Image], path: str | Path, fps: float = 8.0) -> Path:
    """Write `frames` to `path` (.mp4, .webm, .gif or .webp) at `fps`, atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_FILE_SUFFIXES:
        raise UserError(f"cannot write a video as '{suffix or path.name}': use one of {', '.join(VIDEO_FILE_SUFFIXES)}")
    if not frames:
        raise UserError(f"no frames to write to {path}")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise UserError(f"fps must be a positive number, got {fps}")
    try:
        with atomic_path(path) as tmp:
            (_write_ffmpeg if suffix in _CODECS else _write_pil)(frames, tmp, float(fps), suffix)
    except UserError:
        raise
    except (OSError, RuntimeError) as err:  # a folder that cannot be written, ffmpeg failing
        raise UserError(f"cannot write {path} ({short_reason(err, 120)}): check that its folder exists and can be "
                        "written, or choose another --out") from None
    return path


def frame_strip(frames: Sequence[Image.Image], columns: int | None = None, padding: int = 2) -> Image.Image:
    """The frames tiled in reading order, `columns` per row (default: all in one row up to 8, else ~square)."""
    from utils.visualization.grid import make_grid

    n = len(frames)
    cols = columns or (n if n <= 8 else math.ceil(math.sqrt(n)))
    return make_grid(list(frames), nrow=cols, padding=padding)


__all__ = ["VIDEO_FILE_SUFFIXES", "frame_strip", "write_video"]

"""Reading videos for conditioning and training: files, GIFs and frame folders, with frame sampling and resizing.

    clip = read_video("in.mp4", num_frames=14, fps=7, size=(576, 1024))   # a Video: frames (T, 3, H, W) in [0, 1]

Sources: video files through the ffmpeg binary imageio-ffmpeg ships (`.mp4 .webm .mov .mkv .avi
.m4v`), GIFs and animated WebP through PIL (their per-frame delays give the rate), and folders of
frames (`.png .jpg .jpeg .webp .bmp`, in name order, played at `folder_fps`).

Frame sampling (`sample_indices`): keep every `stride`-th frame, or resample to `fps` by time (frame
k of the output is the source frame shown at time k / fps), from `start` seconds, up to `num_frames`.
Resizing (`resize_frames`): scale so the frames cover `size` and crop the excess (`crop` center or
random), or stretch (`crop=None`). A missing or unreadable source is one UserError line.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from utils.errors import UserError, short_reason

VIDEO_FILE_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")
ANIMATED_SUFFIXES = (".gif", ".webp")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class Video:
    """Decoded frames and their rate."""

    frames: torch.Tensor
    """(T, 3, H, W) float32 in [0, 1]."""
    fps: float
    """Frames per second of `frames` (after any resampling)."""

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def is_video_source(path: str | os.PathLike) -> bool:
    p = Path(path)
    if p.is_dir():
        return any(f.suffix.lower() in FRAME_SUFFIXES for f in p.iterdir())
    return p.suffix.lower() in VIDEO_FILE_SUFFIXES + ANIMATED_SUFFIXES


# -- decoding ---------------------------------------------------------------------------------------


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, float]:
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = reader.__next__()
        w, h = meta["size"]
        frames = [np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3) for buf in reader]
    except (OSError, RuntimeError, StopIteration, KeyError) as err:
        raise UserError(f"cannot read the video {path} ({short_reason(err, 100)}): it is not a video ffmpeg can "
                        "decode") from None
    if not frames:
        raise UserError(f"the video {path} has no frames")
    fps = float(meta.get("fps") or 0) or 24.0
    return np.stack(frames), fps


def _read_animated(path: Path) -> tuple[np.ndarray, float]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            frames, delays = [], []
            for i in range(getattr(im, "n_frames", 1)):
                im.seek(i)
                frames.append(np.asarray(im.convert("RGB")))
                delays.append(im.info.get("duration", 100) or 100)
    except (OSError, UnidentifiedImageError) as err:
        raise UserError(f"cannot read {path} ({short_reason(err, 100)}): it is not an animated image") from None
    return np.stack(frames), 1000.0 / float(np.mean(delays))


def _read_folder(folder: Path, fps: float) -> tuple[np.ndarray, float]:
    from PIL import Image, UnidentifiedImageError

    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise UserError(f"no frames in {folder}: expected {', '.join(FRAME_SUFFIXES)} files")
    frames = []
    for f in files:
        try:
            with Image.open(f) as im:
                frames.append(np.asarray(im.convert("RGB")))
        except (OSError, UnidentifiedImageError):
            raise UserError(f"cannot read the frame {f}: it is not an image") from None
    if len({a.shape for a in frames}) != 1:
        raise UserError(f"the frames in {folder} differ in size: every frame of a video must have the same size")
    return np.stack(frames), fps


def decode(path: str | os.PathLike, folder_fps: float = 8.0) -> tuple[np.ndarray, float]:
    """(T, H, W, 3) uint8 frames and the frame rate of a video file, animated image or frame folder."""
    p = Path(os.path.expanduser(str(path)))
    if not p.exists():
        raise UserError(f"video not found: {p}")
    if p.is_dir():
        return _read_folder(p, folder_fps)
    suffix = p.suffix.lower()
    if suffix in ANIMATED_SUFFIXES:
        return _read_animated(p)
    if suffix in VIDEO_FILE_SUFFIXES:
        return _read_ffmpeg(p)
    raise UserError(f"cannot read '{p.name}' as a video: use one of {', '.join(VIDEO_FILE_SUFFIXES + ANIMATED_SUFFIXES)}"
                    " or a folder of frames")


def video_problem(path: str | os.PathLike, folder_fps: float = 8.0) -> str | None:
    """Why `path` does not decode as a video (None when it does), found cheaply before any work: a video
    file's stream header and first frame (ffmpeg), every frame of an animated image, every file of a frame
    folder. A file damaged past its first frame is still found only when its clip is read."""
    p = Path(os.path.expanduser(str(path)))
    if not p.exists():
        return "not found"
    try:
        if p.is_dir() or p.suffix.lower() in ANIMATED_SUFFIXES:
            decode(p, folder_fps)
            return None
        if p.suffix.lower() not in VIDEO_FILE_SUFFIXES:
            return f"'{p.suffix}' is not a video file type"
        import imageio_ffmpeg

        reader = imageio_ffmpeg.read_frames(str(p), pix_fmt="rgb24")
        try:
            reader.__next__()  # the stream's metadata
            reader.__next__()  # its first frame
        finally:
            reader.close()
    except UserError as err:
        return short_reason(err, 80)
    except Exception as err:  # noqa: BLE001 - whatever ffmpeg or PIL raise, the file is unusable
        return short_reason(err if str(err) else type(err).__name__, 80).split(" === ")[0]
    return None


# -- sampling and resizing ----------------------------------------------------------------------------


def sample_indices(total: int, source_fps: float, num_frames: int | None = None, stride: int | None = None,
                   fps: float | None = None, start: float = 0.0) -> list[int]:
    """Which source frames to keep: every `stride`-th, or resampled to `fps` by time, from `start`
    seconds, at most `num_frames` of them. Fewer frames than asked is a UserError."""
    if stride is not None and fps is not None:
        raise UserError("give a frame stride or a target fps, not both")
    if stride is not None and stride < 1:
        raise UserError(f"the frame stride must be at least 1, got {stride}")
    if fps is not None and fps <= 0:
        raise UserError(f"the target fps must be positive, got {fps}")
    first = int(round(start * source_fps))
    if fps is None:
        idx = list(range(first, total, stride or 1))
    else:
        step = source_fps / fps
        idx = []
        k = 0
        while (i := first + int(math.floor(k * step + 1e-6))) < total:
            idx.append(i)
            k += 1
    if num_frames is not None:
        if len(idx) < num_frames:
            raise UserError(f"the video has {len(idx)} frames at this sampling, fewer than the {num_frames} asked: "
                            "use a longer clip, a smaller stride or fps, or fewer frames")
        idx = idx[:num_frames]
    return idx


def resize_frames(frames: torch.Tensor, size: tuple[int, int], crop: str | None = "center",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """(T, C, H, W) -> (T, C, *size): scale to cover `size` then crop (`center` or `random`, the same
    window for every frame), or stretch when `crop` is None. Antialiased bilinear resizing."""
    th, tw = size
    h, w = frames.shape[-2:]
    if crop is None:
        return F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    if crop not in ("center", "random"):
        raise UserError(f"crop must be 'center', 'random' or None, got '{crop}'")
    scale = max(th / h, tw / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    if (nh, nw) != (h, w):
        frames = F.interpolate(frames, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    if crop == "center":
        top, left = (nh - th) // 2, (nw - tw) // 2
    else:
        top = int(torch.randint(0, nh - th + 1, (1,), generator=generator))
        left = int(torch.randint(0, nw - tw + 1, (1,), generator=generator))
    return frames[..., top:top + th, left:left + tw]


def read_video(path: str | os.PathLike, num_frames: int | None = None, stride: int | None = None,
               fps: float | None = None, start: float = 0.0, size: tuple[int, int] | None = None,
               crop: str | None = "center", folder_fps: float = 8.0,
               generator: torch.Generator | None = None) -> Video:
    """Decode, sample and resize a video; see the module docstring."""
    arrays, source_fps = decode(path, folder_fps)
    idx = sample_indices(len(arrays), source_fps, num_frames, stride, fps, start)
    frames = torch.from_numpy(np.ascontiguousarray(arrays[idx])).permute(0, 3, 1, 2).float() / 255.0
    if size is not None:
        frames = resize_frames(frames, size, crop, generator)
    rate = fps if fps is not None else source_fps / (stride or 1)
    return Video(frames.contiguous(), float(rate))


# -- probing ------------------------------------------------------------------------------------------


def probe_video(path: str | os.PathLike) -> dict:
    """Stream facts of a video file as ffprobe reports them: codec, pix_fmt, width, height, fps and the
    decoded frame count. Uses `ffprobe` when it is on PATH, else the ffmpeg binary of imageio-ffmpeg."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"video not found: {p}")
    exe = shutil.which("ffprobe")
    if exe is not None:
        cmd = [exe, "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
               "stream=codec_name,pix_fmt,width,height,r_frame_rate,nb_read_frames", "-of", "json", str(p)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        streams = json.loads(out.stdout or "{}").get("streams") if out.returncode == 0 else None
        if not streams:
            raise UserError(f"ffprobe cannot read {p}: {short_reason(Exception(out.stderr), 120)}")
        s = streams[0]
        num, _, den = s["r_frame_rate"].partition("/")
        return dict(codec=s["codec_name"], pix_fmt=s.get("pix_fmt"), width=int(s["width"]), height=int(s["height"]),
                    fps=float(num) / float(den or 1), frames=int(s["nb_read_frames"]), tool="ffprobe")
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(p))
    meta = reader.__next__()
    frames = sum(1 for _ in reader)
    codec = (meta.get("codec") or "").split()[0]
    return dict(codec=codec, pix_fmt=(meta.get("pix_fmt") or "").split("(")[0] or None, width=meta["size"][0],
                height=meta["size"][1], fps=float(meta["fps"]), frames=frames, tool="imageio-ffmpeg")


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(T, 3, H, W) in [0, 1] -> (T, H, W, 3) uint8."""
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def frames_to_pil(frames: torch.Tensor) -> list:
    """(T, 3, H, W) in [0, 1] -> PIL images."""
    from PIL import Image

    return [Image.fromarray(a) for a in frames_to_uint8(frames)]


def stack_videos(videos: Sequence[Video]) -> torch.Tensor:
    """(B, T, 3, H, W) of videos of one length and size."""
    shapes = {tuple(v.frames.shape) for v in videos}
    if len(shapes) != 1:
        raise UserError(f"videos of different lengths or sizes cannot be stacked: {sorted(shapes)}")
    return torch.stack([v.frames for v in videos])


__all__ = ["ANIMATED_SUFFIXES", "FRAME_SUFFIXES", "VIDEO_FILE_SUFFIXES", "Video", "decode", "frames_to_pil",
           "frames_to_uint8", "is_video_source", "probe_video", "read_video", "resize_frames", "sample_indices",
           "stack_videos"]

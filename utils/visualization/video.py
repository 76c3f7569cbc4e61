"""Writing frame lists to video files."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from utils.io import atomic_path


def write_video(frames: Sequence[Image.Image], path: str | Path, fps: float = 8.0) -> Path:
    """Write frames to .mp4/.webm (ffmpeg through imageio) or .gif (PIL), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".gif":
            first, *rest = [f.convert("RGB") for f in frames]
            first.save(tmp, save_all=True, append_images=rest, duration=int(1000 / fps), loop=0)
        else:
            import imageio.v2 as imageio

            # yuv420p needs even sides; pad by one pixel where needed rather than rescale
            arrays = []
            for f in frames:
                a = np.asarray(f.convert("RGB"))
                h, w = a.shape[:2]
                a = np.pad(a, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                arrays.append(a)
            with imageio.get_writer(tmp, fps=fps, format="FFMPEG", codec="libx264", quality=8,
                                    macro_block_size=1, ffmpeg_log_level="error") as writer:
                for a in arrays:
                    writer.append_data(a)
    return path

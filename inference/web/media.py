"""Results as bytes (PNG, GIF, MP4, latent files) for the API and the demo."""
from __future__ import annotations

import base64
import binascii
import io
import tempfile
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from utils.errors import UserError
from utils.visualization.video import write_video


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def video_bytes(frames: Sequence[Image.Image], fps: float, suffix: str = ".gif") -> bytes:
    """An animated GIF or an MP4 of `frames` (written through utils.visualization.video)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(frames, Path(tmp) / f"frames{suffix}", fps)
        return path.read_bytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def from_b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UserError(f"{what} is not valid base64: send the file's bytes base64-encoded") from None


def write_temp(data: bytes, suffix: str, folder: str | None = None) -> Path:
    """`data` in a new temporary file (the caller removes it)."""
    with tempfile.NamedTemporaryFile(suffix=suffix, dir=folder, delete=False) as f:
        f.write(data)
        return Path(f.name)

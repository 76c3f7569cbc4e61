"""Results written to disk for the API's `"format": "url"`, served back under /files/<name>."""
from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path

from utils.io import atomic_path

SUFFIXES = (".png", ".gif", ".mp4", ".ply", ".safetensors")
NAME = re.compile(r"^[0-9a-f]{32}(\.png|\.gif|\.mp4|\.ply|\.safetensors)$")
MEDIA_TYPES = {".png": "image/png", ".gif": "image/gif", ".mp4": "video/mp4", ".ply": "application/octet-stream",
               ".safetensors": "application/octet-stream"}


class FileStore:
    """A folder of generated files with random names; only the newest `max_files` are kept."""

    def __init__(self, folder: Path, max_files: int = 512):
        self.folder, self.max_files = Path(folder), max_files
        self._lock = threading.Lock()

    def put(self, data: bytes, suffix: str) -> str:
        """Write `data` atomically; returns the file's name (its URL is /files/<name>)."""
        if suffix not in SUFFIXES:
            raise ValueError(f"unsupported suffix {suffix}")
        name = uuid.uuid4().hex + suffix
        with atomic_path(self.folder / name) as tmp:
            tmp.write_bytes(data)
        self._trim()
        return name

    def path(self, name: str) -> Path | None:
        """The file of a name this store made, or None (any other name, path tricks included)."""
        if not NAME.match(name):
            return None
        p = self.folder / name
        return p if p.is_file() else None

    def _trim(self) -> None:
        with self._lock:
            files = sorted((p for p in self.folder.iterdir() if NAME.match(p.name)), key=lambda p: p.stat().st_mtime)
            for old in files[:max(0, len(files) - self.max_files)]:
                old.unlink(missing_ok=True)

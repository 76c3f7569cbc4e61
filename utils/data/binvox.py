"""Binvox voxel files: read and write, run-length encoded, with the translate/scale header.

The format (Patrick Min's `binvox` tool, also read by `binvox_rw` and the `binvox` PyPI package):

    #binvox 1
    dim D H W
    translate tx ty tz
    scale s
    data
    <bytes: (value, count) pairs, value 0 or 1, count 1..255>

The runs cover the grid with the y index running fastest, then z, then x (linear index
x * D*H ... in the tool's words `index = x * wxh + z * width + y`). In memory a grid here is a
boolean array indexed [x, y, z] (what `binvox_rw.read_as_3d_array` and `binvox.Binvox.read(...,
fix_coords=True)` return). A voxel (i, j, k) covers model coordinates
`translate + scale * (i, j, k) / dim` to `translate + scale * (i+1, j+1, k+1) / dim`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.errors import UserError
from utils.io import atomic_path

__all__ = ["BinvoxGrid", "read_binvox", "write_binvox", "encode_runs", "decode_runs"]


@dataclass
class BinvoxGrid:
    """A voxel grid and where it sits in model coordinates."""

    data: np.ndarray
    """Occupancy, bool, indexed [x, y, z]."""
    translate: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Model coordinates of the grid's corner (voxel (0, 0, 0)'s lower corner)."""
    scale: float = 1.0
    """Edge length of the whole grid in model units (the largest dimension's)."""

    @property
    def dims(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.data.shape)


def encode_runs(flat: np.ndarray) -> bytes:
    """(value, count) byte pairs of a flat 0/1 array, runs split at 255."""
    flat = np.asarray(flat, dtype=np.uint8).ravel()
    if flat.size == 0:
        return b""
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [flat.size]]))
    values = flat[starts]
    pieces = -(-lengths // 255)  # runs longer than 255 become several pairs
    rep_values = np.repeat(values, pieces)
    counts = np.full(int(pieces.sum()), 255, dtype=np.int64)
    last = np.cumsum(pieces) - 1
    counts[last] = lengths - 255 * (pieces - 1)
    return np.stack([rep_values, counts.astype(np.uint8)], 1).tobytes()


def decode_runs(raw: bytes, size: int, name: str = "binvox data") -> np.ndarray:
    """The flat bool array of `size` voxels that (value, count) byte pairs describe."""
    arr = np.frombuffer(raw, dtype=np.uint8)
    if arr.size % 2:
        raise UserError(f"{name} is corrupt: its run-length data has an odd number of bytes ({arr.size})")
    values, counts = arr[0::2], arr[1::2].astype(np.int64)
    if values.size and values.max() > 1:
        raise UserError(f"{name} is corrupt: a run has value {int(values.max())} (binvox runs hold 0 or 1)")
    total = int(counts.sum())
    if total != size:
        raise UserError(f"{name} is corrupt: its runs cover {total} voxels but the header's dim says {size} "
                        "(the file is truncated or not a binvox file)")
    return np.repeat(values.astype(bool), counts)


def _header_line(f, path: Path, key: str) -> list[str]:
    line = f.readline()
    words = line.decode("ascii", "replace").split()
    if not words or words[0] != key:
        raise UserError(f"{path} is not a valid binvox file: expected a '{key}' line in the header, got "
                        f"'{' '.join(words)[:40]}'")
    return words[1:]


def read_binvox(path: str | Path) -> BinvoxGrid:
    """Read a .binvox file into a bool grid indexed [x, y, z]; a malformed file is a one-line `UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"binvox file {path} not found")
    with open(path, "rb") as f:
        first = f.readline()
        if not first.startswith(b"#binvox"):
            raise UserError(f"{path} is not a binvox file: it does not start with '#binvox'")
        dims_words = _header_line(f, path, "dim")
        try:
            dims = [int(w) for w in dims_words]
        except ValueError:
            dims = []
        if len(dims) != 3 or min(dims) < 1:
            raise UserError(f"{path} is not a valid binvox file: bad 'dim' line '{' '.join(dims_words)}'")
        try:
            translate = tuple(float(w) for w in _header_line(f, path, "translate"))
            scale_words = _header_line(f, path, "scale")
            scale = float(scale_words[0])
        except (ValueError, IndexError):
            raise UserError(f"{path} is not a valid binvox file: bad 'translate' or 'scale' line") from None
        if len(translate) != 3:
            raise UserError(f"{path} is not a valid binvox file: 'translate' needs 3 numbers")
        _header_line(f, path, "data")
        raw = f.read()
    flat = decode_runs(raw, int(np.prod(dims)), name=str(path))
    # file order is [x, z, y] with y fastest; the grid in memory is [x, y, z]
    data = np.ascontiguousarray(flat.reshape(dims).transpose(0, 2, 1))
    return BinvoxGrid(data, translate, scale)


def write_binvox(path: str | Path, data, translate=(0.0, 0.0, 0.0), scale: float = 1.0) -> Path:
    """Write a grid indexed [x, y, z] (bool, or numbers: occupied where > 0) as .binvox, atomically."""
    grid = np.asarray(data)
    if grid.ndim != 3:
        raise UserError(f"a binvox grid is 3D, got shape {tuple(grid.shape)}")
    grid = grid > 0 if grid.dtype != bool else grid
    dx, dy, dz = grid.shape
    header = (f"#binvox 1\ndim {dx} {dz} {dy}\ntranslate {' '.join(repr(float(t)) for t in translate)}\n"
              f"scale {float(scale)!r}\ndata\n")
    body = encode_runs(grid.transpose(0, 2, 1).ravel())
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(body)
    return path

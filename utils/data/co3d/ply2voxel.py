"""Point clouds (.ply) to voxel grids (.binvox): the first preprocessing step of a CO3D sequence.

    python -m utils.data.co3d.ply2voxel --ply chair/<seq>/pointcloud.ply --output <seq>.binvox --cube_len 32
    python -m utils.data.co3d.ply2voxel --input_dir chair/ --output_dir voxels/ --cube_len 32   # every sequence

The cloud is centred on its bounding box and scaled so that its longest side spans the grid
(less a margin of `padding` on each side); each point marks its voxel; small gaps are closed
(a binary closing of `close` voxels) and the enclosed inside is filled. The .binvox header keeps
the translate and scale that map the grid back to the cloud's coordinates.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from utils.data.binvox import write_binvox
from utils.errors import UserError

__all__ = ["points_to_voxels", "ply_to_binvox", "read_ply_points"]


def read_ply_points(path: str | Path) -> np.ndarray:
    """The x y z of a .ply's vertices as (N, 3) float64 (faces, if any, are ignored)."""
    from utils.visualization.ply import read_ply_vertices

    try:
        v = read_ply_vertices(path)
    except UserError as err:
        if "list properties" not in str(err):
            raise
        raise UserError(f"{path} is a mesh with faces: give a point cloud (CO3D's pointcloud.ply)") from None
    if v.dtype.names is None or not {"x", "y", "z"} <= set(v.dtype.names):
        raise UserError(f"{path} has no x, y, z vertex properties")
    pts = np.stack([np.asarray(v[k], dtype=np.float64) for k in ("x", "y", "z")], -1)
    pts = pts[np.isfinite(pts).all(1)]
    if len(pts) == 0:
        raise UserError(f"{path} has no finite points")
    return pts


def points_to_voxels(points: np.ndarray, cube_len: int = 32, padding: float = 0.05, close: int = 1,
                     fill: bool = True) -> tuple[np.ndarray, tuple[float, float, float], float]:
    """(grid bool [x, y, z], translate, scale) of a point cloud, as a .binvox header describes it."""
    from scipy import ndimage

    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(pts) == 0:
        raise UserError("the point cloud is empty")
    lo, hi = pts.min(0), pts.max(0)
    extent = float((hi - lo).max())
    if extent <= 0:
        raise UserError("the point cloud has no extent (all points coincide)")
    scale = extent / (1 - 2 * padding)  # the grid's edge in cloud units
    translate = (lo + hi) / 2 - scale / 2
    idx = np.floor((pts - translate) / scale * cube_len).astype(np.int64).clip(0, cube_len - 1)
    grid = np.zeros((cube_len,) * 3, dtype=bool)
    grid[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    if close > 0:
        padded = np.pad(grid, close)
        grid = ndimage.binary_closing(padded, structure=np.ones((3, 3, 3)), iterations=close)[
            close:-close, close:-close, close:-close]
    if fill:
        grid = ndimage.binary_fill_holes(grid)
    return grid, tuple(float(t) for t in translate), float(scale)


def ply_to_binvox(ply: str | Path, output: str | Path, cube_len: int = 32, **kw) -> Path:
    grid, translate, scale = points_to_voxels(read_ply_points(ply), cube_len, **kw)
    return write_binvox(output, grid, translate, scale)


def main(argv: list[str] | None = None) -> int:
    from utils.cli import ArgumentParser

    p = ArgumentParser(prog="python -m utils.data.co3d.ply2voxel", description=__doc__.split("\n\n")[0])
    p.add_argument("--ply", default=None, help="one point cloud .ply")
    p.add_argument("--output", default=None, help="the .binvox to write (with --ply)")
    p.add_argument("--input_dir", default=None, help="a CO3D category folder: every <seq>/pointcloud.ply")
    p.add_argument("--output_dir", default=None, help="where <seq>.binvox files go (with --input_dir)")
    p.add_argument("--cube_len", type=int, default=32, help="grid resolution")
    p.add_argument("--padding", type=float, default=0.05, help="empty margin on each side, as a share of the grid")
    p.add_argument("--close", type=int, default=1, help="binary closing iterations (0: none)")
    p.add_argument("--no_fill", action="store_true", help="keep the shell: do not fill the enclosed inside")
    a = p.parse_args(argv)
    if a.cube_len < 4 or not 0 <= a.padding < 0.5:
        raise UserError("--cube_len must be at least 4 and --padding in [0, 0.5)")
    kw = dict(cube_len=a.cube_len, padding=a.padding, close=a.close, fill=not a.no_fill)
    if a.ply:
        if not a.output:
            raise UserError("--ply needs --output <file>.binvox")
        ply_to_binvox(a.ply, a.output, **kw)
        print(f"{a.ply} -> {a.output}")
        return 0
    if not a.input_dir or not a.output_dir:
        raise UserError("give --ply and --output, or --input_dir and --output_dir")
    clouds = sorted(Path(a.input_dir).glob("*/pointcloud.ply"))
    if not clouds:
        raise UserError(f"no <sequence>/pointcloud.ply under {a.input_dir}: give a CO3D category folder")
    for ply in clouds:
        ply_to_binvox(ply, Path(a.output_dir) / f"{ply.parent.name}.binvox", **kw)
    print(f"{len(clouds)} point clouds -> {a.output_dir}")
    return 0


if __name__ == "__main__":
    from utils.errors import cli_errors

    with cli_errors("utils.data.co3d.ply2voxel"):
        sys.exit(main())

"""3D metrics between two point clouds or two voxel grids (utils/metrics/metrics_3d.py says exactly what).

    python evaluate/metrics_3d.py points pred.ply target.ply                 # Chamfer distance, F-score@0.01
    python evaluate/metrics_3d.py points pred.npy target.ply --threshold 0.01 0.02 --euclidean
    python evaluate/metrics_3d.py voxels pred.npy target.npy [--threshold 0.5]

Point clouds: a .ply (the x, y, z of its vertex element; a splat .ply gives its centres) or a .npy
of shape (N, 3). Chamfer distance is the sum of the two directions' mean nearest-neighbour
distances, squared by default (as most papers and pytorch3d), plain with `--euclidean`.
F-score at a threshold: the harmonic mean of precision (predicted points within the threshold of
the target) and recall (target points within it of the prediction). Voxel grids: .npy of shape
(D, H, W), or (B, D, H, W) for a batch, boolean or occupancy probabilities (occupied above
`--threshold`); the IoU of the occupied cells (two empty grids give 1).
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:  # run as a file: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
from pathlib import Path
from typing import Sequence

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="metrics_3d", description="Chamfer distance and F-score between two point clouds, or the IoU of "
        "two voxel grids.", epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="kind", required=True, metavar="{points,voxels}")
    pts = sub.add_parser("points", help="Chamfer distance and F-score of two point clouds (.ply or .npy)",
                         description="Chamfer distance and F-score of a predicted point cloud against a target.")
    pts.add_argument("pred", help="the predicted point cloud: .ply or .npy of shape (N, 3)")
    pts.add_argument("target", help="the target point cloud: .ply or .npy of shape (M, 3)")
    pts.add_argument("--threshold", type=float, nargs="+", default=[0.01],
                     help="F-score distance threshold(s), in the clouds' units (default: 0.01)")
    pts.add_argument("--euclidean", action="store_true",
                     help="Chamfer distance with plain distances (default: squared distances)")
    vox = sub.add_parser("voxels", help="IoU of two voxel grids (.npy)",
                         description="Intersection over union of a predicted occupancy grid and a target grid.")
    vox.add_argument("pred", help="the predicted grid: .npy of shape (D, H, W) or (B, D, H, W)")
    vox.add_argument("target", help="the target grid, of the same shape")
    vox.add_argument("--threshold", type=float, default=0.5,
                     help="occupied where the value is above this (non-boolean grids; default: 0.5)")
    return p


def _read_npy(path: Path):
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise UserError(f"cannot read {path} as a .npy array ({' '.join(str(err).split())[:100]}): "
                        "save it with numpy.save") from None


def _points(name: str):
    """(N, 3) float64 points from a .ply or .npy file."""
    import numpy as np

    path = Path(os.path.expanduser(name))
    if not path.is_file():
        raise UserError(f"point cloud not found: {path}: check the path")
    if path.suffix.lower() == ".ply":
        from utils.visualization.ply import read_ply_vertices

        v = read_ply_vertices(path)
        if not {"x", "y", "z"} <= set(v.dtype.names or ()):
            raise UserError(f"{path} has no x, y, z vertex properties: it is not a point cloud")
        pts = np.stack([np.asarray(v[k], dtype=np.float64) for k in ("x", "y", "z")], -1)
    elif path.suffix.lower() == ".npy":
        pts = _read_npy(path)
        if pts.ndim != 2 or pts.shape[1] != 3 or not np.issubdtype(pts.dtype, np.number):
            raise UserError(f"{path} holds an array of shape {pts.shape} ({pts.dtype}): a point cloud is (N, 3) "
                            "numbers")
        pts = pts.astype(np.float64)
    else:
        raise UserError(f"{path}: a point cloud must be a .ply or .npy file, not '{path.suffix or 'no suffix'}'")
    if len(pts) == 0:
        raise UserError(f"{path} holds no points")
    if not np.isfinite(pts).all():
        raise UserError(f"{path} has NaN or infinite coordinates: clean the cloud first")
    return pts


def _grid(name: str):
    import numpy as np

    path = Path(os.path.expanduser(name))
    if not path.is_file():
        raise UserError(f"voxel grid not found: {path}: check the path")
    if path.suffix.lower() != ".npy":
        raise UserError(f"{path}: a voxel grid must be a .npy file, not '{path.suffix or 'no suffix'}'")
    grid = _read_npy(path)
    if grid.ndim not in (3, 4) or not (grid.dtype == np.bool_ or np.issubdtype(grid.dtype, np.number)):
        raise UserError(f"{path} holds an array of shape {grid.shape} ({grid.dtype}): a voxel grid is (D, H, W) or "
                        "(B, D, H, W), boolean or numbers")
    return grid


@cli_errors("metrics_3d")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli_errors("metrics_3d"):
        import torch

        from utils.metrics.metrics_3d import chamfer_distance, f_score, voxel_iou

        if args.kind == "points":
            if any(not t > 0 for t in args.threshold):
                raise UserError(f"--threshold must be positive, got {' '.join(map(str, args.threshold))}")
            pred, target = (torch.from_numpy(_points(n)) for n in (args.pred, args.target))
            cd = chamfer_distance(pred, target, squared=not args.euclidean)
            print(f"Chamfer distance ({'euclidean' if args.euclidean else 'squared'}): {float(cd[0]):.6g} "
                  f"({len(pred)} predicted, {len(target)} target points)")
            for t in args.threshold:
                f, p, r = f_score(pred, target, threshold=t)
                print(f"F-score@{t:g}: {float(f[0]):.4f} (precision {float(p[0]):.4f}, recall {float(r[0]):.4f})")
        else:
            pred, target = _grid(args.pred), _grid(args.target)
            if pred.shape != target.shape:
                raise UserError(f"the grids differ in shape: {args.pred} is {pred.shape}, {args.target} is "
                                f"{target.shape}: compare grids of one resolution")
            iou = voxel_iou(torch.from_numpy(pred), torch.from_numpy(target), threshold=args.threshold)
            per = "" if len(iou) == 1 else f" (mean of {len(iou)} grids: {' '.join(f'{v:.4f}' for v in iou.tolist())})"
            print(f"voxel IoU: {float(iou.mean()):.4f}{per}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

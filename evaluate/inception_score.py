"""Inception Score of a folder of images or of a registered model, as torch-fidelity computes it.

    python evaluate/inception_score.py DIR [--splits 10] [--weights PATH]
    python evaluate/inception_score.py --model dcgan --num-samples 50000

utils/metrics/inception_score.py says exactly what is computed.
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
from utils.metrics.fid import list_images
from utils.metrics.inception_score import LogitsExtractor, inception_score


@cli_errors("inception_score")
def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="inception_score", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("path", nargs="?", help="a folder of images")
    p.add_argument("--model", help="a registered GAN / image model to sample from instead of a folder")
    p.add_argument("--preset", default=None)
    p.add_argument("--model-weights", default=None)
    p.add_argument("--num-samples", type=int, default=50000, help="images to generate with --model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--splits", type=int, default=10)
    p.add_argument("--no-shuffle", action="store_true", help="keep the sample order (no seeded permutation)")
    p.add_argument("--device", default=None)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--weights", metavar="PATH", default=None, help="pt_inception-2015-12-05-6726825d.pth")
    p.add_argument("--resize", choices=("tf", "pytorch-fid", "none"), default="tf")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    with cli_errors("inception_score"):
        if (args.path is None) == (args.model is None):
            raise UserError("give either a folder of images or --model NAME")
        if args.model:  # the model's name and preset before the network loads
            from models.registry import find_spec

            find_spec(args.model, ("gan", "image")).check_preset(args.preset)
        if args.path is not None:
            from utils.metrics.inception import check_min_side

            check_min_side(list_images(args.path), args.resize)
        source = None
        if args.model:  # the model (and its weights file) before the Inception network
            from models.sampling import model_source

            source = model_source(args.model, args.preset, args.model_weights, args.device, args.seed)
        ex = LogitsExtractor(weights=args.weights, device=args.device, batch_size=args.batch_size,
                             resize=args.resize, progress=not args.quiet)
        if source is not None:
            logits = ex.logits(source, num_samples=args.num_samples, value_range=(-1.0, 1.0))
        else:
            logits = ex.logits(args.path)
        mean, std = inception_score(logits, args.splits, not args.no_shuffle)
        print(f"IS: {mean:.4f} +- {std:.4f} ({len(logits)} images, {args.splits} splits)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""FID and KID between two image sets, with pytorch-fid's conventions (utils/metrics/fid.py says exactly what).

    python evaluate/fid_score.py DIR_A DIR_B                      # FID of two image folders
    python evaluate/fid_score.py DIR_A ref.npz --kid              # stats files work on either side
    python evaluate/fid_score.py DIR --save-stats ref.npz         # reference statistics
    python evaluate/fid_score.py --dataset digits --save-stats digits.npz
    python evaluate/fid_score.py --model dcgan --ref-stats digits.npz --num-samples 10000
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:  # run as a file: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
from typing import Any, Sequence

from utils.data.datasets import available_datasets
from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors
from utils.metrics.fid import (FeatureExtractor, frechet_distance, kernel_inception_distance, list_images, load_stats,
                               save_stats, statistics)

# -- command line ------------------------------------------------------------------------------------

def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="fid_score",
        description="FID (and KID) between two image sets, pytorch-fid conventions (see the module docstring). "
                    "A set is a folder of images, a .npz statistics file (mu, sigma), a registered model "
                    "(--model) or a built-in dataset (--dataset).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("paths", nargs="*", help="folders of images or .npz statistics files (two for FID, one with "
                                            "--save-stats)")
    p.add_argument("--save-stats", metavar="OUT.npz", help="write the statistics (mu, sigma) of the one given set")
    p.add_argument("--kid", action="store_true", help="also report KID (needs images, not .npz, on both sides)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=50, help="images per Inception batch")
    p.add_argument("--num-workers", type=int, default=None, help="image decoding threads (default: min(8, cpus))")
    p.add_argument("--weights", metavar="PATH", default=None,
                   help="pt_inception-2015-12-05-6726825d.pth (default: the torch hub cache, else downloaded)")
    p.add_argument("--dims", type=int, choices=(64, 192, 768, 2048), default=2048,
                   help="feature layer, as pytorch-fid's --dims (2048 is the FID everyone reports)")
    p.add_argument("--resize", choices=("pytorch-fid", "tf", "none"), default="pytorch-fid",
                   help="299x299 resize: torch bilinear (pytorch-fid), TF1 bilinear (torch-fidelity), or none "
                        "(feed images at their own size, at least 75x75: not comparable with published FIDs)")
    g = p.add_argument_group("generated images")
    g.add_argument("--model", help="a registered GAN / image model to sample from (e.g. dcgan)")
    g.add_argument("--preset", default=None, help="the model's preset")
    g.add_argument("--model-weights", default=None, help="the model's weights (default: its registered source)")
    g.add_argument("--num-samples", type=int, default=None,
                   help="images to generate with --model (default 10000), or the first N of a dataset or folder")
    g.add_argument("--seed", type=int, default=0, help="seed of the first generated batch")
    g.add_argument("--ref-stats", metavar="REF.npz", help="reference statistics to compare with")
    d = p.add_argument_group("built-in datasets")
    d.add_argument("--dataset", choices=available_datasets(), help="use a built-in dataset as a set")
    d.add_argument("--dataset-size", type=int, default=32, help="image size of the dataset")
    d.add_argument("--split", default="train", help="dataset split")
    d.add_argument("--data-dir", default=None, help="the files of a standard --dataset (mnist, cifar10, celeba, ffhq, "
                                                    "lsun): nothing is downloaded")
    k = p.add_argument_group("KID")
    k.add_argument("--kid-subsets", type=int, default=100)
    k.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _sources(args: argparse.Namespace) -> list[tuple[str, Any, dict]]:
    """The sets named on the command line, in order: (label, source, features kwargs)."""
    out = []
    if args.model:
        from models.sampling import model_source

        gen = model_source(args.model, args.preset, args.model_weights, args.device, args.seed)
        out.append((f"model {args.model}", gen, {"num_samples": args.num_samples or 10000,
                                                 "value_range": (-1.0, 1.0)}))
    if args.dataset:
        from utils.data.datasets import get_dataset

        named = {"data_dir": args.data_dir} if args.data_dir else {}
        dataset = get_dataset(args.dataset, size=args.dataset_size, split=args.split, **named)
        out.append((f"dataset {args.dataset}", dataset, {"value_range": (-1.0, 1.0), "num_samples": args.num_samples}))
    for path in args.paths:
        out.append((str(path), path, {} if str(path).endswith(".npz") else {"num_samples": args.num_samples}))
    if args.ref_stats:
        out.append((args.ref_stats, args.ref_stats, {}))
    return out


@cli_errors("fid_score")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli_errors("fid_score"):
        if args.model:  # the model's name and preset before anything loads
            from models.registry import find_spec

            find_spec(args.model, ("gan", "image")).check_preset(args.preset)
        if args.num_samples is not None and args.num_samples < 2:
            raise UserError("--num-samples must be at least 2")
        # Check the inputs before the (slow) network load; a model is built later, by its source.
        if args.save_stats and not str(args.save_stats).endswith(".npz"):
            raise UserError(f"--save-stats needs a .npz file name, got '{args.save_stats}'")
        if args.ref_stats:
            load_stats(args.ref_stats)
        from utils.metrics.inception import check_min_side

        for path in args.paths:
            load_stats(path) if str(path).endswith(".npz") else check_min_side(list_images(path), args.resize)
        n_sets = len(args.paths) + bool(args.model) + bool(args.dataset) + bool(args.ref_stats)
        if args.save_stats and n_sets != 1:
            raise UserError(f"--save-stats takes exactly one set (a folder, --dataset or --model), got {n_sets}")
        if not args.save_stats and n_sets != 2:
            raise UserError(f"FID compares two sets, got {n_sets}: give two folders/.npz files, or --model with "
                            "--ref-stats, or --save-stats OUT.npz with one set")
        sets = _sources(args)  # the model (and its weights file) and the dataset before the Inception network
        extractor = FeatureExtractor(weights=args.weights, device=args.device, batch_size=args.batch_size,
                                     num_workers=args.num_workers, progress=not args.quiet, resize=args.resize,
                                     dims=args.dims)
        stats, feats = [], []
        for label, source, kw in sets:
            if isinstance(source, (str, os.PathLike)) and str(source).endswith(".npz"):
                if args.kid:
                    raise UserError(f"KID needs the images of both sets, but {label} is a statistics file: "
                                    "pass the folder instead")
                stats.append(load_stats(source))
                feats.append(None)
                continue
            f = extractor.features(source, desc=f"features of {label}", **kw)
            feats.append(f)
            stats.append(statistics(f))
        if args.save_stats:
            path = save_stats(args.save_stats, *stats[0])
            print(f"saved statistics of {len(feats[0])} images ({sets[0][0]}) to {path}")
            return 0
        value = frechet_distance(*stats[0], *stats[1])
        print(f"FID: {value:.4f}")
        if args.kid:
            mean, std = kernel_inception_distance(feats[0], feats[1], args.kid_subsets, args.kid_subset_size)
            print(f"KID: {mean:.6f} +- {std:.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

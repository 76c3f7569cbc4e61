"""Perceptual path length of a registered GAN (utils/metrics/ppl.py says exactly what).

    python evaluate/ppl_score.py --model dcgan --preset digits --num-samples 10000
    python evaluate/ppl_score.py --model progressive_gan --weights celebaHQ_s6_i80000.pth --crop
    python evaluate/ppl_score.py --model dcgan --preset tiny --num-samples 8 --lpips-backbone vgg16-397923af.pth

Z-space PPL (StyleGAN, section 3.2): pairs of latents are slerped on the unit sphere, as StyleGAN
does, and scaled by sqrt(latent size), the typical length of an N(0, I) draw, since a generator
without an input normalisation (DCGAN) is only defined there (for one with it, such as Progressive
GAN's pixel norm, the scale changes nothing). A class-conditional GAN keeps one class per pair:
`--class` for all, else the classes in turn. W-space PPL needs a mapping network, which no
registered GAN has. The LPIPS-VGG backbone comes from `--lpips-backbone`, else torchvision's cache,
else it is downloaded (not with HF_HUB_OFFLINE=1).
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:  # run as a file: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
from typing import Sequence

from utils.cli import ArgumentParser
from utils.errors import UserError, WeightsError, cli_errors


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="ppl_score", description="Perceptual path length (StyleGAN) of a registered latent GAN, in z space.",
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a registered GAN that maps latents to images (e.g. dcgan)")
    p.add_argument("--preset", default=None, help="the model's preset (default: its default preset)")
    p.add_argument("--weights", default=None, help="the model's weights: a file, folder or hub id (default: the "
                                                   "preset's registered source; random for --preset tiny)")
    p.add_argument("--num-samples", type=int, default=100_000, help="latent pairs (default: 100000, StyleGAN's)")
    p.add_argument("--sampling", choices=("full", "end"), default="full",
                   help="full: t ~ U(0, 1) along the path; end: t = 0, the path's endpoints (default: full)")
    p.add_argument("--epsilon", type=float, default=1e-4, help="step between the two images of a pair (default: 1e-4)")
    p.add_argument("--crop", action="store_true", help="StyleGAN's FFHQ face crop before LPIPS (face models only)")
    p.add_argument("--class", dest="class_name", default=None,
                   help="class of every pair, for a class-conditional GAN (default: the classes in turn)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents and positions (default: 0)")
    p.add_argument("--batch-size", type=int, default=16, help="pairs per forward pass (default: 16)")
    p.add_argument("--lpips-backbone", metavar="PATH", default=None,
                   help="torchvision's ImageNet VGG16 checkpoint (default: the torch hub cache, else downloaded)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: cuda when available)")
    p.add_argument("--save-distances", metavar="OUT.npy", default=None,
                   help="write every pair's scaled LPIPS distance (before the percentile filter) to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@cli_errors("ppl_score")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli_errors("ppl_score"):
        if args.num_samples < 2:
            raise UserError(f"--num-samples must be at least 2, got {args.num_samples}")
        if args.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
        if not args.epsilon > 0:
            raise UserError(f"--epsilon must be positive, got {args.epsilon}")
        if args.save_distances is not None and not args.save_distances.endswith(".npy"):
            raise UserError(f"--save-distances needs a .npy file name, got '{args.save_distances}'")
        import math

        import numpy as np
        import torch

        import models
        from models.gan.pipeline_base import LatentGANPipeline
        from models.registry import get_spec, specs
        from utils.io import atomic_path
        from utils.metrics.lpips import LPIPS
        from utils.metrics.ppl import perceptual_path_length
        from utils.torch_utils import resolve_device

        def gaussian_latents(pipeline_class: type) -> bool:  # a latent GAN drawing z ~ N(0, I)
            return (issubclass(pipeline_class, LatentGANPipeline)
                    and pipeline_class.sample_latents is LatentGANPipeline.sample_latents)

        spec = get_spec("gan", args.model)
        cls = spec.pipeline_class()
        if not gaussian_latents(cls):
            usable = ", ".join(s.name for s in specs("gan") if gaussian_latents(s.pipeline_class()))
            why = ("draws its latents from its own distribution (not N(0, I)), where z-space PPL is not defined"
                   if issubclass(cls, LatentGANPipeline) else "maps images to images, not latents to images")
            raise UserError(f"{spec.name} {why}: PPL takes one of {usable}")
        device = resolve_device(args.device)
        pipe = models.load("gan", spec.name, weights=args.weights, preset=args.preset, device=str(device))
        shape = tuple(pipe.generator.latent_shape)
        dim = math.prod(shape)
        # Checked (and the name turned into a label) before the long run.
        pipe.labels_from(args.class_name, None, 1, torch.Generator())

        def generate(latents: torch.Tensor) -> torch.Tensor:
            # The metric stacks the n images at t over the n at t + epsilon: pair k is rows k and n + k,
            # so the same n labels twice keep one class per pair.
            n = latents.shape[0] // 2
            y = pipe.labels_from(args.class_name, None, n, torch.Generator())
            y = None if y is None else torch.cat([y, y])
            z = (latents * math.sqrt(dim)).reshape(-1, *shape)
            return pipe.generate(z, y, len(z)).to(latents.device)

        try:
            lpips = LPIPS.from_pretrained("vgg", backbone_weights=args.lpips_backbone, device=device)
        except WeightsError as err:  # name the command-line option, not the Python argument
            raise WeightsError(str(err).replace("backbone_weights=<path>", "--lpips-backbone PATH")) from None
        value, distances = perceptual_path_length(
            generate, dim, num_samples=args.num_samples, space="z", epsilon=args.epsilon, sampling=args.sampling,
            crop=args.crop, batch_size=args.batch_size, lpips=lpips, seed=args.seed, device=device,
            progress=not args.quiet)
        if args.save_distances is not None:
            with atomic_path(args.save_distances) as tmp:
                np.save(tmp, distances)
        print(f"PPL (z, {args.sampling}{', crop' if args.crop else ''}, epsilon {args.epsilon:g}): {value:.6g} "
              f"({len(distances)} pairs, 1st and 99th percentile tails dropped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

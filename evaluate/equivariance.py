"""StyleGAN3's equivariance metrics (EQ-T, EQ-T_frac, EQ-R) of a registered generator (utils/metrics/equivariance.py
says exactly what).

    python evaluate/equivariance.py --model stylegan3 --preset stylegan3-t-ffhq-1024
    python evaluate/equivariance.py --model stylegan3 --preset stylegan2-ffhq-1024 --metrics eqt,eqt_frac
    python evaluate/equivariance.py --model stylegan3 --preset tiny --num-samples 64 --json

PSNR in dB between the image of a transformed input and the transformed image (higher: more equivariant),
over --num-samples images (50000 in the paper), one random transform per batch. A generator takes part
when its pipeline can transform its input (StyleGAN3: translations and rotations; StyleGAN2: translations
of its constant input).
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:  # run as a file: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import json
from typing import Sequence

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

NAMES = {"eqt": "EQ-T", "eqt_frac": "EQ-T_frac", "eqr": "EQ-R"}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="equivariance", description="EQ-T, EQ-T_frac and EQ-R (StyleGAN3) of a generator.",
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="stylegan3", help="a registered GAN with a transformable input (default: stylegan3)")
    p.add_argument("--preset", default=None, help="the model's preset (default: its default preset)")
    p.add_argument("--weights", default=None, help="the model's weights: a file, folder or URL (default: the preset's)")
    p.add_argument("--metrics", default="eqt,eqt_frac,eqr", help="comma-separated: eqt, eqt_frac, eqr (default: all)")
    p.add_argument("--num-samples", type=int, default=50_000, help="images (default: 50000, the paper's)")
    p.add_argument("--batch-size", type=int, default=4, help="images per batch; one transform per batch (default: 4)")
    p.add_argument("--translate-max", type=float, default=0.125, help="largest translation, in image sizes (0.125)")
    p.add_argument("--rotate-max", type=float, default=1.0, help="largest rotation, in half turns (1: +-180 degrees)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents and transforms (default: 0)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli_errors("equivariance"):
        metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
        bad = [m for m in metrics if m not in NAMES]
        if bad or not metrics:
            raise UserError(f"--metrics takes eqt, eqt_frac and eqr, got {', '.join(bad) or 'nothing'}")
        if args.num_samples < 1 or args.batch_size < 1:
            raise UserError("--num-samples and --batch-size must be at least 1")
        import models
        from utils.metrics.equivariance import equivariance_psnr
        from utils.torch_utils import resolve_device

        device = resolve_device(args.device)
        pipe = models.load("gan", args.model, weights=args.weights, preset=args.preset, device=str(device))
        if not hasattr(pipe, "equivariance_networks"):
            raise UserError(f"{args.model} has no transformable input, so its equivariance is not defined: use a "
                            "StyleGAN3 or StyleGAN2 network (--model stylegan3)")
        nets = pipe.equivariance_networks()
        if "eqr" in metrics and not nets["rotations"]:
            raise UserError("StyleGAN2's constant input cannot be rotated, so EQ-R is not defined for it: pass "
                            "--metrics eqt,eqt_frac")
        result = equivariance_psnr(nets["mapping"], nets["synthesis"], nets["z_dim"], nets["resolution"],
                                   num_samples=args.num_samples, batch_size=args.batch_size, metrics=metrics,
                                   translate_max=args.translate_max, rotate_max=args.rotate_max, seed=args.seed,
                                   device=device, before_batch=nets["before_batch"], progress=not args.quiet)
        if args.json:
            print(json.dumps({NAMES[k]: v for k, v in result.items()}))
        else:
            print(", ".join(f"{NAMES[k]} {v:.2f} dB" for k, v in result.items()) + f" ({args.num_samples} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

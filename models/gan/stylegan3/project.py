"""Project a photo into a StyleGAN network's W (or W+) space (models/gan/stylegan3/projection.py says how).

    python -m models.gan.stylegan3.project --target photo.png                         # FFHQ StyleGAN3-T
    python -m models.gan.stylegan3.project --target face.jpg --preset stylegan2-ffhq-1024 --w-plus --video
    python -m models.gan.stylegan3.project --target digit.png --weights runs/sg3/generator.safetensors

Writes into --out: target.png (the cropped, resized target), proj.png (the projection), projected_w.safetensors
(the ws, loadable with `load_latents` and usable as `pipe(ws=...)`), and with --video proj.mp4 (target |
projection over the steps).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from utils.cli import ArgumentParser
from utils.errors import UserError, WeightsError, cli_errors


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m models.gan.stylegan3.project",
                                description="Project an image into StyleGAN's latent space (W or W+).",
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", required=True, help="the image to project (centre-cropped and resized to the network)")
    p.add_argument("--preset", default=None, help="stylegan3 preset (default: stylegan3-t-ffhq-1024)")
    p.add_argument("--weights", default=None, help="NVlabs .pkl, rosinality .pt or native .safetensors (default: the "
                                                   "preset's release)")
    p.add_argument("--steps", type=int, default=1000, help="optimisation steps (default: 1000, NVlabs')")
    p.add_argument("--w-plus", action="store_true", help="one w per style (W+) instead of one for all (W)")
    p.add_argument("--seed", type=int, default=0, help="seed of the w statistics and the optimisation noise")
    p.add_argument("--noise-weight", type=float, default=1e5, help="noise regularisation weight (StyleGAN2 inputs)")
    p.add_argument("--label", type=int, default=None, help="class of a class-conditional network")
    p.add_argument("--lpips-backbone", metavar="PATH", default=None,
                   help="torchvision's ImageNet VGG16 checkpoint (default: the torch hub cache, else downloaded)")
    p.add_argument("--video", action="store_true", help="also write proj.mp4 of the optimisation")
    p.add_argument("--out", default="outputs/projection", help="output folder (default: outputs/projection)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli_errors("project"):
        if args.steps < 1:
            raise UserError(f"--steps must be at least 1, got {args.steps}")
        if not Path(args.target).is_file():
            raise UserError(f"--target image not found: {args.target}")
        import torch

        import models
        from models.gan.latents import save_latents
        from models.gan.stylegan3.projection import load_target, project
        from utils.metrics.lpips import LPIPS
        from utils.outputs import ImageOutput, VideoOutput
        from utils.torch_utils import resolve_device

        device = resolve_device(args.device)
        pipe = models.load("gan", "stylegan3", weights=args.weights, preset=args.preset, device=str(device))
        target = load_target(args.target, pipe.config.image_size, pipe.config.channels)
        try:
            lpips = LPIPS.from_pretrained("vgg", backbone_weights=args.lpips_backbone, device=device)
        except WeightsError as err:
            raise WeightsError(str(err).replace("backbone_weights=<path>", "--lpips-backbone PATH")) from None
        result = project(pipe, target, num_steps=args.steps, w_plus=args.w_plus, seed=args.seed,
                         regularize_noise_weight=args.noise_weight, distance=lpips, label=args.label,
                         save_every=max(1, args.steps // 100) if args.video else 0, progress=not args.quiet)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        ImageOutput.from_tensor(target).save(out / "target.png")
        ImageOutput.from_tensor(result.image).save(out / "proj.png")
        save_latents(out / "projected_w.safetensors", result.ws)
        if args.video:
            frames = []
            for ws in result.history:
                img = pipe.synthesize(ws)
                frames.append(ImageOutput.from_tensor(torch.cat([target, img], dim=3)).images[0])
            VideoOutput([frames], fps=10).save(out / "proj.mp4")
        print(f"projected {args.target} in {args.steps} steps: LPIPS {result.distance:.4f}; wrote {out}/proj.png and "
              f"{out}/projected_w.safetensors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

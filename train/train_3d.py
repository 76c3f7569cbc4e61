"""Train a 3D model of the zoo; each model has its own options (`--model NAME --help` lists them).

    python train/train_3d.py --model gaussian_splatting                 # built-in scene, offline
    python train/train_3d.py --model gaussian_splatting --data data/nerf_synthetic/lego --steps 30000
    python train/train_3d.py --model gaussian_splatting --data data/garden --downscale 4 --strategy mcmc

--data takes a NeRF-synthetic scene (transforms_train.json) or a COLMAP scene (sparse/0 + images/).
Outputs go to outputs/<model>/<scene>/ unless --out: point_cloud.ply, test_renders/, turntable.mp4,
metrics.json (PSNR, SSIM, LPIPS on the held-out views), ckpts/ (resumable) and tb/ (TensorBoard).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

# -- gaussian_splatting -------------------------------------------------------------------------------

def add_gaussian_splatting_args(p: ArgumentParser) -> None:
    p.add_argument("--data", default=None, help="scene folder (NeRF-synthetic or COLMAP); default: the built-in "
                                                 "synthetic scene, written to outputs/datasets/synthetic_scene")
    p.add_argument("--steps", type=int, default=None,
                   help="optimisation steps; schedules scale with it (default 30000 on --data, 2000 on the "
                        "built-in scene)")
    p.add_argument("--strategy", choices=("default", "mcmc"), default="default",
                   help="densification: default (clone/split/prune/reset, 3DGS) or mcmc (3DGS-MCMC)")
    p.add_argument("--preset", default=None, help="model preset: default (100k random init points) or tiny "
                                                  "(3k; the default on the built-in scene)")
    p.add_argument("--cap-max", type=int, default=None, help="most Gaussians (mcmc default 1M, default strategy "
                                                              "unlimited; 15k on the built-in scene)")
    p.add_argument("--downscale", type=int, default=1, help="shrink images by this factor on load")
    p.add_argument("--out", default=None, help="output folder (default outputs/gaussian_splatting/<scene>)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU intra-op threads; 1 by default: the CPU rasterizer's many small operations ran "
                        "3.7x faster on 1 thread than on 2 on a shared 2-core machine (0: torch's default)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out/ckpts")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and of each step")
    p.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps (default steps/4)")
    p.add_argument("--turntable-frames", type=int, default=60, help="frames of the turntable video (0: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard logs")


def load_scene(data: str | None, downscale: int):
    """(train, test, scene name, is_builtin) for --data."""
    from utils.data.colmap import is_colmap, load_colmap
    from utils.data.nerf_synthetic import is_nerf_synthetic, load_nerf_synthetic
    from utils.data.synthetic_scene import DEFAULT_SCENE_DIR, ensure_synthetic_scene

    if downscale < 1:
        raise UserError(f"--downscale must be 1 or more, got {downscale}")
    builtin = data is None
    root = ensure_synthetic_scene(DEFAULT_SCENE_DIR) if builtin else Path(data)
    if not root.exists():
        raise UserError(f"data folder '{root}' not found: pass a NeRF-synthetic scene (transforms_train.json) or a "
                        "COLMAP scene (sparse/0), or leave --data out to use the built-in scene")
    if is_nerf_synthetic(root):
        train = load_nerf_synthetic(root, "train", downscale)
        test = load_nerf_synthetic(root, "test", downscale) if (root / "transforms_test.json").is_file() else None
    elif is_colmap(root):
        train, test = load_colmap(root, "train", downscale), load_colmap(root, "test", downscale)
    else:
        raise UserError(f"'{root}' is neither a NeRF-synthetic scene (no transforms_train.json) nor a COLMAP scene "
                        "(no sparse/0/cameras.bin or .txt)")
    return train, test, ("synthetic_scene" if builtin else root.resolve().name), builtin


def train_gaussian_splatting(args: argparse.Namespace, argv: list[str]) -> int:
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be positive, got {args.steps}")

    import torch

    from models.generation_3d.gaussian_splatting.config import TrainConfig, get_config
    from models.generation_3d.gaussian_splatting.strategy import make_strategy
    from models.generation_3d.gaussian_splatting.training import Trainer, write_metrics
    from utils.torch_utils import resolve_device
    from utils.visualization.ply import write_splat_ply
    from utils.visualization.turntable import orbit_from_cameras, write_turntable

    device = resolve_device(args.device)
    if device.type == "cpu" and args.threads > 0:
        torch.set_num_threads(args.threads)
    train, test, scene, builtin = load_scene(args.data, args.downscale)
    steps = args.steps or (BUILTIN_STEPS if builtin else 30_000)
    model_cfg = get_config(args.preset or ("tiny" if builtin else "default"))
    cap = args.cap_max or (BUILTIN_CAP if builtin else None)
    overrides = {}
    if cap is not None:
        overrides["cap_max" if args.strategy == "mcmc" else "max_gaussians"] = cap
    strategy = make_strategy(args.strategy, steps, **overrides)
    train_cfg = TrainConfig(seed=args.seed, background=train.background or (1.0, 1.0, 1.0)).scaled_to(steps)
    out = Path(args.out) if args.out else Path("outputs") / "gaussian_splatting" / scene
    trainer = Trainer(model_cfg, train_cfg, strategy, train, test, out, device, save_every=args.save_every,
                      tensorboard=not args.no_tensorboard)
    print(f"training gaussian_splatting on {scene}: {len(train)} views {train.cameras.width}x"
          f"{train.cameras.height}, {steps} steps, strategy {args.strategy}, {len(trainer.model)} initial "
          f"Gaussians, device {device.type} (rasterizer: {'gsplat' if device.type == 'cuda' else 'torch'})",
          file=sys.stderr)
    t0 = time.perf_counter()
    result = trainer.fit(resume=args.resume, progress=not args.no_progress)
    train_seconds = time.perf_counter() - t0

    write_splat_ply(out / "point_cloud.ply", {k: v.detach() for k, v in trainer.model.splats.items()})
    metrics = trainer.evaluate(write_dir=out / "test_renders")
    metrics.update(train_seconds=round(train_seconds, 1), strategy=args.strategy, device=device.type,
                   scene=scene, command="python " + " ".join(["train/train_3d.py", *argv]))
    write_metrics(out / "metrics.json", metrics)
    if args.turntable_frames > 0:
        cams = orbit_from_cameras(train.cameras, args.turntable_frames)
        write_turntable(lambda c: trainer.render_views(c), cams, out / "turntable.mp4")
    lp = "n/a" if metrics.get("lpips") is None else f"{metrics['lpips']:.4f}"
    print(f"done in {train_seconds:.1f} s ({result['seconds']:.1f} s training): test PSNR {metrics['psnr']:.2f} dB, "
          f"SSIM {metrics['ssim']:.4f}, LPIPS {lp}, {metrics['n_gaussians']} Gaussians -> {out}")
    return 0


BUILTIN_STEPS = 1000
"""Default steps on the built-in scene: a few minutes on two CPU cores."""
BUILTIN_CAP = 10_000
"""Default cap on the number of Gaussians on the built-in scene (its ground truth has 3,260)."""


# -- dispatch ------------------------------------------------------------------------------------------

# registry name -> (adds the model's options to the parser, runs the training). A new 3D model adds
# its own two functions above and one entry here.
TRAINERS = {
    "gaussian_splatting": (add_gaussian_splatting_args, train_gaussian_splatting),
}


def build_parser(model: str | None) -> ArgumentParser:
    p = ArgumentParser(prog="train_3d.py", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--model", required=True, help=f"registered 3d model to train: {', '.join(TRAINERS)}")
    if model in TRAINERS:
        TRAINERS[model][0](p.add_argument_group(f"{model} options"))
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The model's own options, once --model names it (`--help` without --model lists the models)."""
    from models.registry import get_spec

    argv = sys.argv[1:] if argv is None else list(argv)
    peek = ArgumentParser(prog="train_3d.py", add_help=False)
    peek.add_argument("--model")
    known, _ = peek.parse_known_args(argv)
    model = None
    if known.model is not None:
        model = get_spec("3d", known.model).name
        if model not in TRAINERS:
            raise UserError(f"train_3d.py cannot train '{model}' yet: it trains {', '.join(TRAINERS)}")
    args = build_parser(model).parse_args(argv)
    args.model = model
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    return TRAINERS[args.model][1](args, argv)


if __name__ == "__main__":
    with cli_errors("train_3d.py"):
        sys.exit(main())

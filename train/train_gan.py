"""Train a GAN of the zoo: the same script on CPU, one GPU, or `accelerate launch` on many.

    python train/train_gan.py --model dcgan --dataset digits
    accelerate launch train/train_gan.py --model dcgan --dataset path/to/images --preset celeba-64

Writes under --out: TensorBoard logs (tb/), sample grids (samples/), atomic checkpoints
(checkpoints/step_*.pt, exact resume with --resume), log.jsonl, and the final generator as
native safetensors (generator.safetensors, EMA weights when EMA is on).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.registry import find_spec, specs
from utils.cli import ArgumentParser
from utils.errors import cli_errors
from utils.gan.trainer import GANTrainer, Settings, TrainerOptions


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    gan_names = [s.name for s in specs("gan") if s.trainer]
    p = ArgumentParser(prog="train_gan.py", description="Train a GAN of the zoo.")
    p.add_argument("--model", default="dcgan", help=f"GAN to train: {', '.join(gan_names)}")
    p.add_argument("--preset", default=None, help="model preset (default: the model's default preset)")
    p.add_argument("--dataset", default="digits", help="'digits' (built in) or a folder of images")
    p.add_argument("--steps", type=int, default=None, help="generator steps (default: the recipe's)")
    p.add_argument("--batch-size", type=int, default=None, help="images per step and process")
    p.add_argument("--lr-g", type=float, default=None, help="generator learning rate")
    p.add_argument("--lr-d", type=float, default=None, help="discriminator learning rate (TTUR when different)")
    p.add_argument("--loss", default=None, help="non_saturating, hinge, wasserstein or lsgan")
    p.add_argument("--n-critic", type=int, default=None, help="discriminator steps per generator step")
    p.add_argument("--gp-weight", type=float, default=None, help="WGAN-GP gradient penalty weight")
    p.add_argument("--r1-weight", type=float, default=None, help="R1 penalty weight gamma")
    p.add_argument("--lr-decay-start", type=int, default=None,
                   help="step from which learning rates decay linearly to 0 at the last step (0: constant)")
    p.add_argument("--ema", type=float, default=None, help="generator EMA decay (0 disables)")
    p.add_argument("--augment", default=None, help="DiffAugment policy, e.g. 'color,translation,cutout', or 'ada'")
    p.add_argument("--spectral-norm", action="store_true", help="spectral norm on every discriminator layer")
    p.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"], help="autocast precision")
    p.add_argument("--seed", type=int, default=0, help="seed of data order, noise and init")
    p.add_argument("--out", default=None, help="output folder (default: outputs/train_gan/<model>-<preset>)")
    p.add_argument("--resume", default=None, help="'auto' (latest in --out) or a checkpoint path")
    p.add_argument("--log-every", type=int, default=50, help="steps between TensorBoard scalars")
    p.add_argument("--sample-every", type=int, default=500, help="steps between sample grids")
    p.add_argument("--ckpt-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--keep", type=int, default=3, help="checkpoints to keep")
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is visible")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> tuple[Settings, Any]:
    spec = find_spec(args.model, ("gan",))
    preset = spec.check_preset(args.preset)
    recipe = spec.training_recipe(preset)
    pick = lambda a, r: r if a is None else a  # noqa: E731
    s = Settings(model=spec.name, preset=preset, dataset=args.dataset, steps=pick(args.steps, recipe.steps),
                 batch_size=pick(args.batch_size, recipe.batch_size), lr_g=pick(args.lr_g, recipe.lr_g),
                 lr_d=pick(args.lr_d, recipe.lr_d), betas=recipe.betas, loss=pick(args.loss, recipe.loss),
                 n_critic=pick(args.n_critic, recipe.n_critic), gp_weight=pick(args.gp_weight, recipe.gp_weight),
                 r1_weight=pick(args.r1_weight, recipe.r1_weight), ema_beta=pick(args.ema, recipe.ema_beta),
                 augment=pick(args.augment, recipe.augment), spectral_norm=args.spectral_norm,
                 mixed_precision=args.mixed_precision, seed=args.seed,
                 lr_decay_start=pick(args.lr_decay_start, recipe.lr_decay_start))
    return s, recipe


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume) a training; returns a summary with the final losses and output paths."""
    settings, _ = settings_from(args)
    spec = find_spec(settings.model, ("gan",))
    options = TrainerOptions(out=Path(args.out or f"outputs/train_gan/{settings.model}-{settings.preset}"),
                             resume=args.resume, log_every=args.log_every, sample_every=args.sample_every,
                             ckpt_every=args.ckpt_every, keep=args.keep, workers=args.workers, cpu=args.cpu,
                             progress=not args.no_progress)
    return GANTrainer(settings, lambda: spec.training_recipe(settings.preset), options).run()


def main(argv: list[str] | None = None) -> None:
    with cli_errors("train_gan.py"):
        args = parse_args(argv)
        summary = train(args)
        if "generator" in summary:
            print(f"generator weights: {summary['generator']}")


if __name__ == "__main__":
    main()

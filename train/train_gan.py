"""Train a GAN of the zoo: the same script on CPU, one GPU, or `accelerate launch` on many.

    python train/train_gan.py --model dcgan --dataset digits
    accelerate launch train/train_gan.py --model dcgan --dataset path/to/images --preset celeba-64

Writes under --out: TensorBoard logs (tb/), sample grids (samples/), atomic checkpoints
(checkpoints/step_*.pt, exact resume with --resume), log.jsonl, and the final generator as
native safetensors (generator.safetensors, EMA weights when EMA is on).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.registry import find_spec, specs
from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors
from utils.gan.trainer import GANTrainer, Settings, TrainerOptions


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    gan_names = [s.name for s in specs("gan") if s.trainer]
    p = ArgumentParser(prog="train_gan.py", description="Train a GAN of the zoo.")
    p.add_argument("--model", default="dcgan", help=f"GAN to train: {', '.join(gan_names)}")
    p.add_argument("--preset", default=None, help="model preset (default: the model's default preset)")
    p.add_argument("--dataset", "--data", dest="dataset", default="digits",
                   help="'digits' (built in) or a folder of images (--data: NVlabs' name)")
    p.add_argument("--steps", type=int, default=None, help="generator steps (default: the recipe's)")
    p.add_argument("--batch-size", "--batch", dest="batch_size", type=int, default=None,
                   help="images per step and process (--batch: NVlabs' name)")
    p.add_argument("--lr-g", type=float, default=None, help="generator learning rate")
    p.add_argument("--lr-d", type=float, default=None, help="discriminator learning rate (TTUR when different)")
    p.add_argument("--loss", default=None, help="non_saturating, hinge, wasserstein, lsgan or ragan")
    p.add_argument("--n-critic", type=int, default=None, help="discriminator steps per generator step")
    p.add_argument("--gp-weight", type=float, default=None, help="WGAN-GP gradient penalty weight")
    p.add_argument("--r1-weight", "--gamma", dest="r1_weight", type=float, default=None,
                   help="R1 penalty weight gamma (--gamma: NVlabs' name)")
    p.add_argument("--config", default=None, help="YAML file of the recipe's config keys (aetherist: 'model:' and "
                   "'training:' sections, the Aetherist seed's keys)")
    p.add_argument("--cfg", default=None, help="architecture variant of the model (stylegan3: stylegan3-t, "
                                               "stylegan3-r or stylegan2)")
    p.add_argument("--kimg", type=float, default=None,
                   help="length of the run in thousands of images (sets --steps from the batch size)")
    p.add_argument("--mirror", action="store_true", help="add left-right mirrored copies of the training images")
    p.add_argument("--aug", default=None, choices=["ada", "noaug"],
                   help="ADA or no augmentation (NVlabs' --aug; the same as --augment ada / --augment '')")
    p.add_argument("--target", type=float, default=None, help="ADA target for E[sign(D(real))] (0.6 when left out)")
    p.add_argument("--lr-decay-start", type=int, default=None,
                   help="step from which learning rates decay linearly to 0 at the last step (0: constant)")
    p.add_argument("--ema", type=float, default=None, help="generator EMA decay (0 disables)")
    p.add_argument("--augment", default=None, help="DiffAugment policy, e.g. 'color,translation,cutout', or 'ada'")
    p.add_argument("--spectral-norm", action="store_true", help="spectral norm on every discriminator layer")
    p.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"], help="autocast precision")
    p.add_argument("--seed", type=int, default=0, help="seed of data order, noise and init")
    p.add_argument("--out", default=None, help="output folder (default: outputs/train_gan/<model>-<preset>)")
    p.add_argument("--resume", default=None, help="'auto' (latest in --out) or a checkpoint path")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an --out that holds another run, deleting that run's files (without it, "
                        "such an --out is refused)")
    p.add_argument("--log-every", type=int, default=50, help="steps between TensorBoard scalars")
    p.add_argument("--sample-every", type=int, default=500, help="steps between sample grids")
    p.add_argument("--ckpt-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--keep", type=int, default=3, help="checkpoints to keep")
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is visible")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--data-dir", default=None, help="the files of a standard --dataset (mnist, cifar10, celeba, ffhq, "
                                                    "lsun): nothing is downloaded")
    p.add_argument("--metrics", default="", help="scores during training into TensorBoard: fid, is or fid,is")
    p.add_argument("--metrics-every", type=int, default=500, help="steps between --metrics scorings")
    p.add_argument("--metrics-samples", type=int, default=1000, help="generated images per scoring")
    p.add_argument("--metrics-weights", default=None, help="Inception weights file for --metrics")
    p.add_argument("--wandb", action="store_true", help="also log to Weights & Biases (needs wandb installed)")
    return p.parse_args(argv)


def recipe_options(spec, args: argparse.Namespace) -> dict[str, Any]:
    """The recipe's own options given on the command line (--cfg), refused for a recipe without them."""
    import importlib
    import inspect

    options = {"cfg": args.cfg} if getattr(args, "cfg", None) else {}
    if getattr(args, "config", None):
        options["config_file"] = args.config
    module, _, fn = spec.trainer.partition(":")
    params = inspect.signature(getattr(importlib.import_module(module), fn)).parameters
    for key in options:
        if key not in params:
            flag = "config" if key == "config_file" else key
            raise UserError(f"{spec.name} has no --{flag} (its recipe takes only --preset): leave it out")
    return options


def settings_from(args: argparse.Namespace) -> tuple[Settings, Any]:
    spec = find_spec(args.model, ("gan",))
    preset = spec.check_preset(args.preset)
    if args.aug is not None and args.augment is not None:
        raise UserError("give either --aug (ada or noaug) or --augment, not both")
    if args.kimg is not None and args.steps is not None:
        raise UserError("give either --kimg or --steps, not both")
    if args.kimg is not None and args.kimg <= 0:
        raise UserError(f"--kimg must be positive, got {args.kimg}")
    if args.target is not None and not 0 < args.target < 1:
        raise UserError(f"--target is the ADA target for E[sign(D(real))], in (0, 1), got {args.target}")
    recipe = spec.training_recipe(preset, **recipe_options(spec, args))
    pick = lambda a, r: r if a is None else a  # noqa: E731
    augment = {"ada": "ada", "noaug": ""}.get(args.aug, args.augment)
    batch_size = pick(args.batch_size, recipe.batch_size)
    steps = args.steps if args.kimg is None else max(1, math.ceil(args.kimg * 1000 / max(batch_size, 1)))
    s = Settings(model=spec.name, preset=preset, dataset=args.dataset, steps=pick(steps, recipe.steps),
                 batch_size=batch_size, lr_g=pick(args.lr_g, recipe.lr_g),
                 lr_d=pick(args.lr_d, recipe.lr_d), betas=recipe.betas, loss=pick(args.loss, recipe.loss),
                 n_critic=pick(args.n_critic, recipe.n_critic), gp_weight=pick(args.gp_weight, recipe.gp_weight),
                 r1_weight=pick(args.r1_weight, recipe.r1_weight), ema_beta=pick(args.ema, recipe.ema_beta),
                 augment=pick(augment, recipe.augment), spectral_norm=args.spectral_norm,
                 mixed_precision=args.mixed_precision, seed=args.seed,
                 lr_decay_start=pick(args.lr_decay_start, recipe.lr_decay_start), mirror=args.mirror,
                 ada_target=pick(args.target, 0.6), cfg=args.cfg or "", data_dir=args.data_dir or "")
    return s, recipe


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume) a training; returns a summary with the final losses and output paths."""
    settings, _ = settings_from(args)
    spec = find_spec(settings.model, ("gan",))
    options = TrainerOptions(out=Path(args.out or f"outputs/train_gan/{settings.model}-{settings.preset}"),
                             resume=args.resume, log_every=args.log_every, sample_every=args.sample_every,
                             ckpt_every=args.ckpt_every, keep=args.keep, workers=args.workers, cpu=args.cpu,
                             progress=not args.no_progress, overwrite=args.overwrite, metrics=args.metrics,
                             metrics_every=args.metrics_every, metrics_samples=args.metrics_samples,
                             metrics_weights=args.metrics_weights, wandb=args.wandb)
    opts = recipe_options(spec, args)
    return GANTrainer(settings, lambda: spec.training_recipe(settings.preset, **opts), options).run()


def main(argv: list[str] | None = None) -> None:
    with cli_errors("train_gan.py"):
        args = parse_args(argv)
        summary = train(args)
        if "generator" in summary:
            print(f"generator weights: {summary['generator']}")


if __name__ == "__main__":
    main()

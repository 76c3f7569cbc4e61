"""Fine-tune, LoRA-train or DreamBooth a diffusion model of the zoo (SDXL, SD3, FLUX; any model whose spec
names a diffusion training recipe): the same script on CPU, one GPU, or `accelerate launch` on many.

    python train/train_diffusion.py --model sdxl --preset tiny                  # built-in captioned shapes, CPU
    python train/train_diffusion.py --model flux --preset tiny --mode full
    python train/train_diffusion.py --model sdxl --preset sdxl-base --data data/pets --mode lora --rank 16
    python train/train_diffusion.py --model flux --preset dev --data data/dog --mode dreambooth \\
        --instance-prompt "a photo of sks dog" --class-prompt "a photo of a dog"
    accelerate launch train/train_diffusion.py --model sd3 --preset sd3.5-medium --data data/art --mode lora
    python train/train_diffusion.py ... --resume auto                          # continue exactly where it stopped

--data is a folder of images with captions (metadata.jsonl with file_name + text, or .txt sidecars: the
Hugging Face imagefolder convention); without it the tiny presets train on the built-in captioned shapes.
Writes under --out (default outputs/train_diffusion/<model>-<preset>-<mode>): lora.safetensors (diffusers
format, or --lora-format kohya; generate_image.py --lora loads it) or <denoiser>.safetensors (full mode),
checkpoints/ (exact resume), samples/ (grids of the validation prompts), tb/ (TensorBoard), log.jsonl,
settings.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

# command-line flag -> TrainConfig field, for the options that only override the recipe when given
OVERRIDES = ("mode", "steps", "batch_size", "grad_accum", "lr", "lr_warmup", "text_encoder_lr", "weight_decay",
             "max_grad_norm", "optimizer", "mixed_precision", "ema", "rank", "alpha", "lora_dropout", "resolution",
             "max_ratio", "caption_dropout", "prediction_type", "snr_gamma", "density", "logit_mean", "logit_std",
             "mode_scale", "weighting", "shift", "guidance", "instance_prompt", "class_prompt", "class_data",
             "num_class_images", "prior_loss_weight", "sample_steps")


def trainable_models() -> list[str]:
    from models.registry import specs

    return [s.name for s in specs("image") if s.trainer]


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="train_diffusion.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="sdxl", help=f"model to train: {', '.join(trainable_models())}")
    p.add_argument("--preset", default="tiny", help="model preset; 'tiny' trains random tiny weights offline")
    p.add_argument("--weights", default=None, help="weights to start from (file, folder or hub id; default: the "
                                                   "preset's)")
    p.add_argument("--data", default=None, help="folder of captioned images (default: the built-in captioned shapes)")
    p.add_argument("--caption-column", default=None, help="metadata.jsonl column of the captions (default: text, "
                                                          "caption or prompt)")
    p.add_argument("--mode", default=None, help="full, lora (default) or dreambooth")
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the recipe's)")
    g.add_argument("--batch-size", type=int, default=None, help="images per micro-step and process")
    g.add_argument("--grad-accum", type=int, default=None, help="micro-steps per optimisation step")
    g.add_argument("--lr", type=float, default=None, help="learning rate (default: the recipe's for the mode)")
    g.add_argument("--lr-warmup", type=int, default=None, help="linear warm-up steps")
    g.add_argument("--text-encoder-lr", type=float, default=None, help="learning rate of the text-encoder LoRA")
    g.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay")
    g.add_argument("--max-grad-norm", type=float, default=None, help="gradient clipping (0: off)")
    g.add_argument("--optimizer", default=None, help="adamw, or adamw8bit (bitsandbytes, CUDA)")
    g.add_argument("--mixed-precision", default=None, help="no, fp16 or bf16")
    g.add_argument("--gradient-checkpointing", action="store_true", default=None, help="recompute activations "
                                                                                       "(less memory)")
    g.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false")
    g.add_argument("--ema", type=float, default=None, help="EMA decay of the weights in full mode (0: off)")
    g.add_argument("--seed", type=int, default=0, help="seed of the data order, noise and LoRA initialisation")
    g = p.add_argument_group("LoRA")
    g.add_argument("--rank", type=int, default=None, help="LoRA rank")
    g.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default: the rank)")
    g.add_argument("--lora-dropout", type=float, default=None, help="dropout on the LoRA input")
    g.add_argument("--lora-targets", default=None, help="comma-separated groups (attention, mlp, ...) or layer-name "
                                                        "endings (default: attention,mlp)")
    g.add_argument("--train-text-encoder", action="store_true", help="also train a LoRA on the CLIP text encoder(s)")
    g.add_argument("--lora-format", default="diffusers", help="format of lora.safetensors: diffusers or kohya")
    g = p.add_argument_group("data")
    g.add_argument("--resolution", type=int, default=None, help="training resolution (the square bucket's side)")
    g.add_argument("--no-buckets", dest="buckets", action="store_false", default=None,
                   help="no aspect-ratio bucketing: every image is cropped square")
    g.add_argument("--max-ratio", type=float, default=None, help="widest bucket aspect ratio (default 2)")
    g.add_argument("--random-crop", action="store_true", help="random crops instead of centre crops")
    g.add_argument("--random-flip", action="store_true", help="mirror images left-right half of the time")
    g.add_argument("--caption-dropout", type=float, default=None, help="probability of the empty caption")
    g.add_argument("--cache-latents", action="store_true", help="encode images with the VAE once, cache on disk")
    g.add_argument("--cache-text", action="store_true", help="encode captions once, cache on disk")
    g.add_argument("--cache-dir", default=None, help="where caches live (default: <out>/cache)")
    g = p.add_argument_group("objective")
    g.add_argument("--prediction-type", default=None, help="UNets: epsilon or v_prediction")
    g.add_argument("--snr-gamma", type=float, default=None, help="UNets: min-SNR gamma (e.g. 5)")
    g.add_argument("--density", default=None, help="flow models: logit_normal, mode or uniform")
    g.add_argument("--logit-mean", type=float, default=None, help="flow models: logit-normal mean")
    g.add_argument("--logit-std", type=float, default=None, help="flow models: logit-normal std")
    g.add_argument("--mode-scale", type=float, default=None, help="flow models: mode density scale")
    g.add_argument("--weighting", default=None, help="flow models: none, sigma_sqrt or cosmap")
    g.add_argument("--shift", type=float, default=None, help="flow models: static sigma shift (SD3 3.0, FLUX 1.0)")
    g.add_argument("--guidance", type=float, default=None, help="FLUX dev: guidance value while training")
    g = p.add_argument_group("DreamBooth")
    g.add_argument("--instance-prompt", default=None, help="prompt of the instance images, with the identifier")
    g.add_argument("--class-prompt", default=None, help="prompt of the class images (prior preservation)")
    g.add_argument("--class-data", default=None, help="folder of class images (completed by the model)")
    g.add_argument("--num-class-images", type=int, default=None, help="class images")
    g.add_argument("--prior-loss-weight", type=float, default=None, help="weight of the prior loss (0: off)")
    g = p.add_argument_group("run")
    g.add_argument("--validation-prompt", action="append", default=None,
                   help="prompt of the sample grids (repeat for several; default: the data's first captions)")
    g.add_argument("--sample-steps", type=int, default=None, help="sampling steps of grids and class images")
    g.add_argument("--sample-every", type=int, default=0, help="steps between sample grids (0: at the end)")
    g.add_argument("--ckpt-every", type=int, default=0, help="steps between checkpoints (0: at the end)")
    g.add_argument("--eval-batches", type=int, default=0, help="fixed batches whose loss is measured before and after "
                                                              "training (0: none)")
    g.add_argument("--log-every", type=int, default=10, help="steps between TensorBoard scalars")
    g.add_argument("--keep", type=int, default=3, help="checkpoints to keep (0: all)")
    g.add_argument("--out", default=None, help="output folder")
    g.add_argument("--resume", default=None, help="'auto' (latest in --out) or a checkpoint path")
    g.add_argument("--overwrite", action="store_true", help="start afresh in an --out holding another run, deleting "
                                                            "that run's files")
    g.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    g.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is visible")
    g.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def config_from(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(spec, the recipe's ModelTraining, the TrainConfig of this run)."""
    from models.registry import find_spec

    spec = find_spec(args.model, ("image",))
    if not spec.trainer:
        raise UserError(f"{spec.name} has no training recipe in this zoo: train one of {', '.join(trainable_models())}")
    preset = spec.check_preset(args.preset)
    training = spec.training_recipe(preset)
    changes: dict[str, Any] = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k, None) is not None}
    if args.gradient_checkpointing is not None:
        changes["gradient_checkpointing"] = args.gradient_checkpointing
    if args.buckets is not None:
        changes["buckets"] = args.buckets
    if args.lora_targets:
        changes["lora_targets"] = tuple(t.strip() for t in args.lora_targets.split(",") if t.strip())
    if args.validation_prompt:
        changes["validation_prompts"] = tuple(args.validation_prompt)
    if changes.get("mode") == "full" and args.lr is None and training.full_lr is not None:
        changes["lr"] = training.full_lr
    cfg = training.defaults.with_(**changes, seed=args.seed, train_text_encoder=args.train_text_encoder,
                                  center_crop=not args.random_crop, random_flip=args.random_flip,
                                  cache_latents=args.cache_latents, cache_text=args.cache_text)
    cfg.check()
    return spec, training, cfg


def make_trainer(args: argparse.Namespace) -> Any:
    """The `DiffusionTrainer` of these arguments (checked; nothing trained or written yet)."""
    from utils.diffusion.training.trainer import DiffusionTrainer, RunOptions

    spec, training, cfg = config_from(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out or f"outputs/train_diffusion/{spec.name}-{cfg.preset}-{cfg.mode}")
    options = RunOptions(out=out, data=args.data, weights=args.weights, caption_column=args.caption_column,
                         resume=args.resume, overwrite=args.overwrite, log_every=args.log_every,
                         sample_every=args.sample_every, ckpt_every=args.ckpt_every, keep=args.keep,
                         workers=args.workers, cpu=args.cpu, progress=not args.no_progress,
                         lora_format=args.lora_format, cache_dir=args.cache_dir,
                         eval_batches=args.eval_batches)
    return DiffusionTrainer(cfg, training, options)


def train(args: argparse.Namespace) -> dict[str, Any]:
    return make_trainer(args).run()


def main(argv: list[str] | None = None) -> None:
    with cli_errors("train_diffusion.py"):
        args = build_parser().parse_args(argv)
        summary = train(args)
        losses = [h["loss"] for h in summary["history"]]
        if losses:
            print(f"trained {summary['steps']} steps: loss {losses[0]:.4f} -> {losses[-1]:.4f}")
        if "eval_loss" in summary:
            print(f"held-out loss {summary['eval_loss_start']:.4f} -> {summary['eval_loss']:.4f}")
        for key in ("lora", "weights"):
            if key in summary:
                print(f"{key}: {summary[key]}")


if __name__ == "__main__":
    main()

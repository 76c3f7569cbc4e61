"""Train (fine-tune) a video model of the zoo; each model has its own options (`--model NAME --help`).

    python train/train_video.py --model svd                                   # tiny preset, built-in moving shapes
    python train/train_video.py --model runway_gen3                           # motion modules only, tiny SD 1.5
    python train/train_video.py --model svd --preset svd-xt --data data/clips --steps 10000 --mixed-precision fp16 \\
        --gradient-checkpointing                                              # a folder of videos
    accelerate launch train/train_video.py --model svd --preset svd --data data/metadata.jsonl

--data takes a folder of videos (.mp4 .webm .mov .mkv .avi .gif, or subfolders of frames) or a
metadata.jsonl of video paths (with optional fps and motion_bucket_id per line); without it the
`tiny` preset trains on the built-in synthetic dataset of moving shapes (no files, no network).
Outputs go to outputs/<model>/<preset>/ unless --out: ckpts/ (resumable), log.jsonl, tb/ (TensorBoard),
samples/ (mp4), settings.json, and the fine-tuned model as an official-layout single file
(svd_finetuned.safetensors, which generate_video.py --weights loads); runway_gen3 trains the motion modules
only and writes them as an AnimateDiff motion adapter (motion_adapter.safetensors, released layout).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import ArgumentParser, nonnegative_int
from utils.errors import UserError, cli_errors


# -- options and steps every video trainer shares -------------------------------------------------------

def add_clip_args(p, frames_help: str = "frames per training clip", stream: bool = True) -> None:
    p.add_argument("--num-frames", type=int, default=None, help=frames_help)
    p.add_argument("--height", type=int, default=None, help="clip height in pixels")
    p.add_argument("--width", type=int, default=None, help="clip width in pixels")
    if stream:
        p.add_argument("--stride", type=int, default=None, help="keep every N-th frame of the data videos")
        p.add_argument("--data-fps", type=float, default=None, help="resample the data videos to this rate (not with "
                                                                    "--stride)")


def add_run_args(p, seed_help: str, samples: bool = True) -> None:
    """Seed, resume, checkpoints, device and logging: the same flags for every video trainer."""
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="continue the run in --out (its newest checkpoint), or from the given checkpoint file")
    p.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps (default: steps / 4)")
    if samples:
        p.add_argument("--sample-every", type=nonnegative_int, default=0, help="write a sample video every N steps "
                                                                               "(0: at the end only)")
    p.add_argument("--keep", type=int, default=3, help="checkpoints kept (0: all)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (0: torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    if samples:
        p.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard logs")


def check_data(args: argparse.Namespace) -> None:
    if args.data is not None and not Path(args.data).exists():
        raise UserError(f"--data {args.data} not found: pass a folder of videos or a metadata.jsonl")
    if args.stride is not None and args.data_fps is not None:
        raise UserError("give --stride or --data-fps, not both")


def configure(cfg, args: argparse.Namespace, keys: tuple[str, ...], spec, preset: str):
    """The recipe with the flags given (None: the recipe's), --height/--width as its size, checked against the
    preset's pixel multiple."""
    from dataclasses import replace

    changes = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    if args.height is not None or args.width is not None:
        changes["size"] = (args.height or cfg.size[0], args.width or cfg.size[1])
    cfg = replace(cfg, seed=args.seed, **changes)
    multiple = spec.default(preset, "pixel_multiple")
    if cfg.size[0] % multiple or cfg.size[1] % multiple:
        raise UserError(f"--height/--width {cfg.size[0]}x{cfg.size[1]} must be multiples of {multiple} for {preset}")
    return cfg


def run_settings(args: argparse.Namespace, cfg) -> int:
    """Sets --threads; returns the checkpoint interval (default a quarter of the steps)."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return args.save_every if args.save_every is not None else max(1, cfg.steps // 4)


def run_options(args: argparse.Namespace, out: Path, save_every: int, **extra):
    from models.video_generation.svd.training import RunOptions

    return RunOptions(out=str(out), data=args.data, weights=args.weights, resume=args.resume, device=args.device,
                      save_every=save_every, sample_every=args.sample_every, keep=args.keep,
                      tensorboard=not args.no_tensorboard, progress=not args.no_progress, stride=args.stride,
                      data_fps=args.data_fps, **extra)


def train_and_report(run, output: str) -> int:
    """Runs the trainer; prints the time, last step and loss, and result[output]."""
    t0 = time.perf_counter()
    result = run()
    last = result["history"][-1]["loss"] if result["history"] else float("nan")
    tail = f", sample {result['sample']}" if "sample" in result else ""
    print(f"done in {time.perf_counter() - t0:.1f}s: step {result['steps']}, loss {last:.4f} -> {result[output]}{tail}")
    return 0


# -- svd -----------------------------------------------------------------------------------------------

def add_svd_args(p) -> None:
    p.add_argument("--preset", default="tiny", help="tiny (random weights, CPU minutes), svd, svd-xt or svd-xt-1.1 "
                                                    "(fine-tunes the release: needs --weights or the hub file)")
    p.add_argument("--data", default=None, help="folder of videos or metadata.jsonl (default: built-in moving shapes)")
    p.add_argument("--weights", default=None, help="the weights to start from (official file or diffusers folder; "
                                                   "default: the preset's)")
    p.add_argument("--out", default=None, help="output folder (default outputs/svd/<preset>)")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the preset's recipe)")
    p.add_argument("--batch-size", type=int, default=None, help="clips per step and process")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate")
    p.add_argument("--warmup", type=int, default=None, help="linear learning-rate warm-up steps")
    add_clip_args(p)
    p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default=None, help="accelerate mixed precision")
    p.add_argument("--gradient-checkpointing", action="store_true", default=None,
                   help="recompute activations in the backward pass (less memory)")
    p.add_argument("--ema", type=float, default=None, help="EMA decay of the UNet weights (0: none)")
    p.add_argument("--trainable", choices=("all", "temporal"), default=None, help="train every UNet parameter, or the "
                                                                                 "temporal layers only")
    p.add_argument("--drop-prob", type=float, default=None, help="probability of dropping each condition (for CFG)")
    add_run_args(p, "seed of the run (initial weights, data order, noise)")

def train_svd(args: argparse.Namespace, argv: list[str]) -> int:
    from models.registry import get_spec
    from models.video_generation.svd.training import SVDTrainer, recipe

    spec = get_spec("video", "svd")
    preset = spec.check_preset(args.preset)
    check_data(args)
    cfg = configure(recipe(preset), args, ("steps", "batch_size", "lr", "warmup", "num_frames", "mixed_precision",
                                           "ema", "trainable", "drop_prob", "gradient_checkpointing"), spec, preset)
    out = Path(args.out) if args.out else Path("outputs") / "svd" / preset
    opts = run_options(args, out, run_settings(args, cfg))
    trainer = SVDTrainer(cfg, opts)
    data = args.data or "the built-in moving shapes"
    # on stdout: a refusal that follows (bad --weights, --resume) stays the one line on stderr
    print(f"training svd/{preset} on {data}: {cfg.num_frames} frames of {cfg.size[0]}x{cfg.size[1]}, batch "
          f"{cfg.batch_size}, steps {cfg.steps}, lr {cfg.lr:g}, mixed precision {cfg.mixed_precision}")
    return train_and_report(trainer.run, "weights")


# -- runway_gen3 ----------------------------------------------------------------------------------------

def add_runway_gen3_args(p) -> None:
    p.add_argument("--preset", default="tiny", help="tiny (the tiny SD 1.5 and a new adapter, CPU minutes), v15-v2 or "
                                                    "v15-v3 (fine-tunes the released adapter on SD 1.5)")
    p.add_argument("--data", default=None, help="folder of videos or metadata.jsonl (default: built-in moving shapes)")
    p.add_argument("--weights", default=None, help="the motion adapter to start from (released .ckpt/.safetensors or "
                                                   "diffusers MotionAdapter folder; default: tiny a new one, else the "
                                                   "preset's release)")
    p.add_argument("--base", default=None, help="the SD 1.5 image model kept frozen (single file, diffusers folder or "
                                                "hub id; default: tiny's, else SD 1.5)")
    p.add_argument("--prompt", default=None, help="the text every clip is trained with (default: empty)")
    p.add_argument("--out", default=None, help="output folder (default outputs/runway_gen3/<preset>)")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the preset's recipe)")
    p.add_argument("--batch-size", type=int, default=None, help="clips per step and process")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate")
    p.add_argument("--warmup", type=int, default=None, help="linear learning-rate warm-up steps")
    p.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay")
    p.add_argument("--snr-gamma", type=float, default=None, help="min-SNR loss weighting gamma (default: none)")
    add_clip_args(p, "frames per training clip (at most 32)")
    p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default=None, help="accelerate mixed precision")
    p.add_argument("--gradient-checkpointing", action="store_true", default=None,
                   help="recompute activations in the backward pass (less memory)")
    add_run_args(p, "seed of the run (a new adapter's weights, data order, noise)")

def train_runway_gen3(args: argparse.Namespace, argv: list[str]) -> int:
    from models.registry import get_spec
    from models.video_generation.runway_gen3.training import MotionTrainer, recipe

    spec = get_spec("video", "runway_gen3")
    preset = spec.check_preset(args.preset)
    check_data(args)
    cfg = configure(recipe(preset), args, ("steps", "batch_size", "lr", "warmup", "weight_decay", "snr_gamma",
                                           "num_frames", "mixed_precision", "gradient_checkpointing", "prompt"),
                    spec, preset)
    out = Path(args.out) if args.out else Path("outputs") / "runway_gen3" / preset
    opts = run_options(args, out, run_settings(args, cfg), extra={"base": args.base})
    trainer = MotionTrainer(cfg, opts)
    data = args.data or "the built-in moving shapes"
    print(f"training runway_gen3/{preset} motion modules (image model frozen) on {data}: {cfg.num_frames} frames of "
          f"{cfg.size[0]}x{cfg.size[1]}, batch {cfg.batch_size}, steps {cfg.steps}, lr {cfg.lr:g}, mixed precision "
          f"{cfg.mixed_precision}")
    return train_and_report(trainer.run, "weights")


# -- luma_dream (the camera adapter of the LTX-Video stand-in) ------------------------------------------

def add_luma_dream_args(p) -> None:
    p.add_argument("--camera", action="store_true", help="train the camera adapter (Plücker rays -> token "
                                                         "offsets; the transformer stays frozen): what luma_dream "
                                                         "trains, given or not")
    p.add_argument("--preset", default="tiny", help="tiny (random tiny LTX weights, clips rendered from the built-in "
                                                    "3D scene: offline, CPU minutes) or an LTX-Video release preset")
    p.add_argument("--data", default=None, help="folder of posed videos: clip.mp4 + clip.json (a camera path per "
                                                "video; default: clips rendered from the built-in scene)")
    p.add_argument("--weights", default=None, help="the LTX-Video weights the adapter feeds (default: the preset's)")
    p.add_argument("--out", default=None, help="output folder (default outputs/luma_dream/<preset>-camera)")
    p.add_argument("--steps", type=int, default=None, help="adapter optimisation steps (default: the preset's recipe)")
    p.add_argument("--batch-size", type=int, default=None, help="clips per step and process")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate of the adapter")
    add_clip_args(p, "frames per clip (1 + k * the VAE's temporal ratio)", stream=False)
    p.add_argument("--num-clips", type=int, default=None, help="clips rendered from the built-in scene (no --data)")
    p.add_argument("--base-steps", type=int, default=None, help="tiny only: first fit the random tiny transformer "
                                                                "on the clips for N steps (no camera)")
    p.add_argument("--prompt", default=None, help="the text every clip is trained with")
    p.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default=None, help="accelerate mixed precision")
    add_run_args(p, "seed of the run (rendered clips, adapter init, noise)", samples=False)


def train_luma_dream(args: argparse.Namespace, argv: list[str]) -> int:
    from models.registry import get_spec
    from models.video_generation.luma_dream.training import CameraRunOptions, CameraTrainer, recipe

    spec = get_spec("video", "luma_dream")
    preset = spec.check_preset(args.preset)
    if args.data is not None and not Path(args.data).is_dir():
        raise UserError(f"--data {args.data} is not a folder: give a folder of posed videos (clip.mp4 + clip.json)")
    cfg = configure(recipe(preset), args, ("steps", "batch_size", "lr", "num_frames", "num_clips", "base_steps",
                                           "prompt", "mixed_precision"), spec, preset)
    cfg.check()
    frames = spec.default(preset, "frame_multiple")
    if (cfg.num_frames - 1) % frames:
        raise UserError(f"--num-frames {cfg.num_frames}: {preset} clips have 1 + {frames}k frames")
    out = Path(args.out) if args.out else Path("outputs") / "luma_dream" / f"{preset}-camera"
    save_every = run_settings(args, cfg)
    opts = CameraRunOptions(out=str(out), data=args.data, weights=args.weights, resume=args.resume, device=args.device,
                            save_every=save_every, keep=args.keep, progress=not args.no_progress)
    data = args.data or f"{cfg.num_clips} clips rendered from the built-in scene"
    print(f"training the luma_dream/{preset} camera adapter on {data}: {cfg.num_frames} frames of "
          f"{cfg.size[0]}x{cfg.size[1]}, batch {cfg.batch_size}, steps {cfg.steps}, lr {cfg.lr:g}")
    return train_and_report(CameraTrainer(cfg, opts).run, "adapter")


# -- dispatch ------------------------------------------------------------------------------------------

# registry name -> (adds the model's options, trains it). A new video model adds its two functions and one entry.
TRAINERS = {
    "svd": (add_svd_args, train_svd),
    "runway_gen3": (add_runway_gen3_args, train_runway_gen3),
    "luma_dream": (add_luma_dream_args, train_luma_dream),
}


def build_parser(model: str | None) -> ArgumentParser:
    p = ArgumentParser(prog="train_video.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="svd", help=f"registered video model to train: {', '.join(TRAINERS)}")
    if model in TRAINERS:
        TRAINERS[model][0](p.add_argument_group(f"{model} options"))
    return p


def main(argv: list[str] | None = None) -> int:
    from models.registry import get_spec

    argv = sys.argv[1:] if argv is None else list(argv)
    peek = ArgumentParser(prog="train_video.py", add_help=False)
    peek.add_argument("--model", default="svd")
    model = get_spec("video", peek.parse_known_args(argv)[0].model).name
    if model not in TRAINERS:
        raise UserError(f"train_video.py cannot train '{model}' yet: it trains {', '.join(TRAINERS)}")
    args = build_parser(model).parse_args(argv)
    args.model = model
    return TRAINERS[model][1](args, argv)


if __name__ == "__main__":
    with cli_errors("train_video.py"):
        sys.exit(main())

"""Diffusion training speed and memory: optimisation steps per second and peak memory of the trainer
(utils.diffusion.training) for SDXL, SD 1.5, SD3 and FLUX, LoRA against full fine-tuning, with and without
gradient checkpointing, at the tiny presets' sizes and at a mid size (denoisers widened and deepened,
tens of millions of parameters, 64 px images), on the built-in captioned shapes.

Each configuration builds a trainer, runs `--warmup` steps, then times `--steps` steps (data, VAE
encoding, text encoding, forward, backward, optimiser). Peak memory is CUDA's max_memory_allocated on a
GPU, the process RSS growth above the pre-step level on the CPU (sampled every 5 ms).

    python -m benchmarks.train_diffusion                          # tiny + mid, every model, CPU
    python -m benchmarks.train_diffusion --sizes mid --models flux --device cuda
    python -m benchmarks.train_diffusion --toy                    # seconds: what the tests run
"""
from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

MODELS = ("sdxl", "sd15", "sd3", "flux")
SIZES = ("tiny", "mid")


def _widen(pipe, model: str):
    """The tiny pipeline with a mid-size denoiser (same text encoders and VAE, so the same conditioning sizes)."""
    torch.manual_seed(0)
    if model == "sdxl":
        from models.image_generation.stable_diffusion.unet import SDXLUNet

        cfg = pipe.unet.config
        pipe.unet = SDXLUNet(cfg.with_(model_channels=128, channel_mult=(1, 2, 2), num_res_blocks=2,
                                       transformer_depth=(0, 2, 2), transformer_depth_middle=2, head_dim=32,
                                       norm_groups=32)).eval()
    elif model == "sd15":  # SD 1.x's shape: attention on the upper levels, 8 heads, no vector conditioning
        from models.image_generation.stable_diffusion.unet import SDXLUNet

        cfg = pipe.unet.config
        pipe.unet = SDXLUNet(cfg.with_(model_channels=128, channel_mult=(1, 2, 2), num_res_blocks=2,
                                       transformer_depth=(1, 1, 0), transformer_depth_middle=1, num_heads=8,
                                       norm_groups=32)).eval()
    elif model == "sd3":
        from models.image_generation.stable_diffusion.mmdit import MMDiT

        cfg = pipe.transformer.config
        pipe.transformer = MMDiT(dataclasses.replace(cfg, depth=6, num_heads=6, head_dim=64,
                                                     pos_embed_max_size=32)).eval()
    else:
        from models.image_generation.flux.model import FluxTransformer

        p = pipe.transformer.params
        pipe.transformer = FluxTransformer(dataclasses.replace(p, hidden_size=384, num_heads=6, depth=3,
                                                               depth_single_blocks=6, axes_dim=(16, 24, 24))).eval()
    return pipe


class _PeakRSS:
    """The largest RSS growth (MB) above the level at entry, sampled on a thread."""

    def __enter__(self):
        import psutil

        self.proc, self.peak, self.stop = psutil.Process(), 0, threading.Event()
        self.base = self.proc.memory_info().rss
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self):
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss - self.base)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss - self.base)
        self.mb = self.peak / 2 ** 20
        return False


def measure(model: str, size: str, mode: str, checkpointing: bool, steps: int, warmup: int, resolution: int,
            batch: int, device: str) -> dict:
    """One configuration's figures: steps/s, peak MB, trained parameters (millions), last loss."""
    from models.registry import find_spec
    from utils.diffusion.training.trainer import DiffusionTrainer, RunOptions

    spec = find_spec(model, ("image",))
    training = spec.training_recipe("tiny")
    if size == "mid":
        load = training.load_pipeline
        training = dataclasses.replace(training, load_pipeline=lambda p, w: _widen(load(p, w), model))
    cfg = training.defaults.with_(mode=mode, steps=warmup + steps, batch_size=batch, resolution=resolution,
                                  gradient_checkpointing=checkpointing, lr=1e-4)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = DiffusionTrainer(cfg, training, RunOptions(out=Path(tmp) / "run", progress=False,
                                                             cpu=device == "cpu"))
        trainer._build()
        data, _ = trainer.batch_iterators()
        for step in range(warmup):
            trainer.train_step(step, data)
        dev = trainer.device
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
        with _PeakRSS() as rss:
            start = time.perf_counter()
            for step in range(warmup, warmup + steps):
                log = trainer.train_step(step, data)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(dev) / 2 ** 20 if dev.type == "cuda" else rss.mb
        trained = sum(p.numel() for g in trainer.opt.param_groups for p in g["params"])
        total = sum(p.numel() for p in trainer.recipe.denoiser.parameters())
    return {"model": model, "size": size, "mode": mode, "checkpointing": checkpointing, "steps_per_s": steps / seconds,
            "peak_mb": peak, "trained_m": trained / 1e6, "denoiser_m": total / 1e6, "loss": log["loss"]}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="benchmarks/train_diffusion.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated: sdxl, sd15, sd3, flux")
    p.add_argument("--sizes", default=",".join(SIZES), help="comma-separated: tiny, mid")
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--resolution", type=int, default=0, help="image side (default: 32 tiny, 64 mid)")
    p.add_argument("--batch-size", type=int, default=2, help="images per step")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--toy", action="store_true", help="one model, tiny, 1 timed step: checks the benchmark runs")
    return p


def main(argv: list[str] | None = None) -> list[dict]:
    with cli_errors("benchmarks/train_diffusion.py"):
        args = build_parser().parse_args(argv)
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
        for name, given, allowed in (("--models", models, MODELS), ("--sizes", sizes, SIZES)):
            bad = [x for x in given if x not in allowed]
            if bad or not given:
                raise UserError(f"{name} takes {', '.join(allowed)}, got '{','.join(bad) or ''}'")
        if args.steps < 1 or args.warmup < 0 or args.batch_size < 1 or args.resolution < 0:
            raise UserError("--steps and --batch-size must be at least 1, --warmup and --resolution at least 0")
        if args.device not in ("cpu", "cuda"):
            raise UserError(f"--device must be cpu or cuda, got '{args.device}'")
        if args.device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is visible here; use --device cpu")
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.toy:
            models, sizes, args.steps, args.warmup = models[-1:], ["tiny"], 1, 0
        rows = []
        print(f"{'model':5} {'size':4} {'mode':4} {'ckpt':4} {'steps/s':>8} {'peak MB':>8} {'trained M':>9} "
              f"{'denoiser M':>10}")
        for model in models:
            for size in sizes:
                res = args.resolution or (32 if size == "tiny" else 64)
                combos = [("lora", False)] if args.toy else [("lora", False), ("lora", True), ("full", False),
                                                             ("full", True)]
                for mode, ckpt in combos:
                    r = measure(model, size, mode, ckpt, args.steps, args.warmup, res, args.batch_size, args.device)
                    rows.append(r)
                    print(f"{model:5} {size:4} {mode:4} {'on' if ckpt else 'off':4} {r['steps_per_s']:8.3f} "
                          f"{r['peak_mb']:8.1f} {r['trained_m']:9.3f} {r['denoiser_m']:10.3f}", flush=True)
        return rows


if __name__ == "__main__":
    main()

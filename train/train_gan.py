"""Train a GAN of the zoo: the same script on CPU, one GPU, or `accelerate launch` on many.

    python train/train_gan.py --model dcgan --dataset digits
    accelerate launch train/train_gan.py --model dcgan --dataset path/to/images --preset celeba-64

Writes under --out: TensorBoard logs (tb/), sample grids (samples/), atomic checkpoints
(checkpoints/step_*.pt, exact resume with --resume), log.jsonl, and the final generator as
native safetensors (generator.safetensors, EMA weights when EMA is on).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator

if __package__ in (None, ""):  # run as a script: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from models.registry import find_spec, specs
from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors


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


@dataclass
class Settings:
    """The final configuration of a run: the recipe's defaults with the command line's overrides."""

    model: str
    preset: str
    dataset: str
    steps: int
    batch_size: int
    lr_g: float
    lr_d: float
    betas: tuple[float, float]
    loss: str
    n_critic: int
    gp_weight: float
    r1_weight: float
    ema_beta: float
    augment: str
    spectral_norm: bool
    mixed_precision: str
    seed: int
    lr_decay_start: int = 0


class StepBatches(torch.utils.data.Sampler):
    """Index batches for steps [start, stop), each a pure function of (seed, batch number, rank)."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int, rank: int, world: int):
        from train.common import epoch_indices

        self.args = (n, batch_size, seed, rank, world)
        self.start, self.stop = start, stop
        self._indices = epoch_indices
        if n < batch_size * world:
            raise UserError(f"the dataset has {n} images, fewer than one batch of {batch_size * world}: "
                            "lower --batch-size or add images")

    def __iter__(self) -> Iterator[list[int]]:
        n, b, seed, rank, world = self.args
        for i in range(self.start, self.stop):
            yield self._indices(n, b, i, seed, rank, world).tolist()

    def __len__(self) -> int:
        return self.stop - self.start


def load_dataset(name: str, size: int, channels: int):
    if name == "digits":
        from utils.data.digits import DigitsDataset

        return DigitsDataset(size=size, split="train")
    from utils.data.datasets import get_dataset

    return get_dataset(name, size=size)


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.shape[1] == channels:
        return x
    if channels == 3 and x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if channels == 1 and x.shape[1] == 3:
        return x.mean(dim=1, keepdim=True)
    raise UserError(f"the data has {x.shape[1]} channels but the model expects {channels}")


def collate(items: list[dict]) -> dict[str, Any]:
    images = torch.stack([it["image"] for it in items])
    labels = [it.get("label") for it in items]
    out = {"image": images, "label": None if any(l is None for l in labels) else torch.tensor(labels)}
    # further image tensors (the B side of an unpaired dataset) are batched the same way
    out.update({k: torch.stack([it[k] for it in items]) for k, v in items[0].items()
                if k not in out and isinstance(v, torch.Tensor)})
    return out


def lr_factor(step: int, decay_start: int, steps: int) -> float:
    """Constant until `decay_start`, then linear towards 0 (CycleGAN's schedule, per step instead of per epoch)."""
    if decay_start <= 0:
        return 1.0
    return 1.0 - max(0, step - decay_start) / float(steps - decay_start + 1)


def settings_from(args: argparse.Namespace) -> tuple[Settings, Any]:
    spec = find_spec(args.model, ("gan",))
    preset = args.preset or spec.default_preset
    if preset not in spec.presets:
        from utils.errors import did_you_mean

        raise UserError(f"{spec.name} has no preset '{preset}': {did_you_mean(preset, spec.presets)}")
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
    if s.steps < 1 or s.batch_size < 1 or s.n_critic < 1:
        raise UserError("--steps, --batch-size and --n-critic must be at least 1")
    return s, recipe


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume) a training; returns a summary with the final losses and output paths."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from models.gan.pipeline_base import save_native
    from train.common import (checkpoint_path, latest_checkpoint, load_checkpoint, prune_checkpoints,
                              save_checkpoint, seed_step, write_json)
    from train.gan import EMA, AdaptiveAugment, diff_augment, get_loss, gradient_penalty, r1_penalty
    from utils.visualization.grid import grid_array, save_grid

    settings, recipe = settings_from(args)
    loss_fn = get_loss(settings.loss)
    out = Path(args.out or f"outputs/train_gan/{settings.model}-{settings.preset}")
    ckpt_dir = out / "checkpoints"
    resume_from = None
    if args.resume:
        resume_from = latest_checkpoint(ckpt_dir) if args.resume == "auto" else Path(args.resume)
        if args.resume != "auto" and not resume_from.exists():
            raise UserError(f"checkpoint not found: {resume_from}: check the path, or use --resume auto")

    accelerator = Accelerator(cpu=args.cpu, mixed_precision=settings.mixed_precision)
    set_seed(settings.seed)  # the initial weights come from this seed
    recipe = find_spec(settings.model, ("gan",)).training_recipe(settings.preset)
    G, D, config = recipe.generator, recipe.discriminator, recipe.config
    if settings.spectral_norm:
        from train.gan.spectral import apply_spectral_norm

        apply_spectral_norm(D)
    if recipe.make_dataset is not None:
        dataset = recipe.make_dataset(settings.dataset)
    else:
        dataset = load_dataset(settings.dataset, config.image_size, config.channels)
    conditional = getattr(config, "num_classes", 0) > 0
    if conditional and getattr(dataset, "num_classes", None) in (None, 0) and settings.dataset != "digits":
        raise UserError(f"{settings.model} preset '{settings.preset}' is class-conditional but {settings.dataset} "
                        "has no class labels: use a class-per-subfolder dataset or an unconditional preset")

    ema = EMA(G, settings.ema_beta) if settings.ema_beta > 0 else None
    opt_g = torch.optim.Adam(G.parameters(), lr=settings.lr_g, betas=settings.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=settings.lr_d, betas=settings.betas)
    ada = AdaptiveAugment() if settings.augment == "ada" else None

    start = 0
    history: list[dict[str, float]] = []
    if resume_from is not None:
        state = load_checkpoint(resume_from)
        saved = json.loads(state["settings"])
        if saved["model"] != settings.model or saved["preset"] != settings.preset:
            raise UserError(f"{resume_from} belongs to {saved['model']} preset '{saved['preset']}', not "
                            f"{settings.model} '{settings.preset}'")
        G.load_state_dict(state["generator"])
        D.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        if ada is not None:
            ada.load_state_dict(state["ada"])
        start = int(state["step"])
    G, D, opt_g, opt_d = accelerator.prepare(G, D, opt_g, opt_d)
    if resume_from is not None and accelerator.scaler is not None and "scaler" in state:
        accelerator.scaler.load_state_dict(state["scaler"])
    device = accelerator.device
    rank, world = accelerator.process_index, accelerator.num_processes
    unwrapped_g = accelerator.unwrap_model(G)

    batches_per_step = settings.n_critic
    loader = torch.utils.data.DataLoader(
        dataset, collate_fn=collate, num_workers=args.workers,
        batch_sampler=StepBatches(len(dataset), settings.batch_size, settings.seed, start * batches_per_step,
                                  settings.steps * batches_per_step, rank, world))
    data = iter(loader)

    writer = None
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
        write_json(out / "settings.json", asdict(settings))
    fixed_gen = torch.Generator().manual_seed(settings.seed + 12345)
    n_show = 64 if not conditional else 10 * 8
    if recipe.sampler is None:
        fixed_z = torch.randn((n_show, *unwrapped_g.latent_shape), generator=fixed_gen).to(device)
    fixed_y = (torch.arange(n_show) % config.num_classes).to(device) if conditional else None

    def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if ada is not None:
            return ada(x, gen)
        return diff_augment(x, settings.augment, 1.0, gen) if settings.augment else x

    def checkpoint(step: int) -> None:
        if not accelerator.is_main_process:
            return
        state = {"step": step, "settings": json.dumps(asdict(settings)),
                 "config": json.dumps(asdict(config)),
                 "generator": accelerator.unwrap_model(G).state_dict(),
                 "discriminator": accelerator.unwrap_model(D).state_dict(),
                 "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict()}
        if ema is not None:
            state["ema"] = ema.state_dict()
        if ada is not None:
            state["ada"] = ada.state_dict()
        if accelerator.scaler is not None:
            state["scaler"] = accelerator.scaler.state_dict()
        save_checkpoint(checkpoint_path(ckpt_dir, step), state)
        prune_checkpoints(ckpt_dir, args.keep)

    def sample(step: int) -> None:
        if not accelerator.is_main_process:
            return
        net = ema.shadow if ema is not None else unwrapped_g
        was_training = net.training
        net.eval()
        with torch.no_grad():
            images = (recipe.sampler(net) if recipe.sampler is not None else net(fixed_z, fixed_y)).float().cpu()
        net.train(was_training)
        save_grid(images, out / "samples" / f"step_{step:07d}.png", nrow=10 if conditional else 8)
        writer.add_image("samples", grid_array(images, nrow=10 if conditional else 8), step, dataformats="HWC")

    bar = tqdm(range(start, settings.steps), initial=start, total=settings.steps, desc=f"{settings.model}",
               disable=args.no_progress or not accelerator.is_main_process, dynamic_ncols=True)
    G.train()
    D.train()
    for step in bar:
        gen = seed_step(settings.seed, step, rank)
        log: dict[str, float] = {}
        if settings.lr_decay_start > 0:
            factor = lr_factor(step, settings.lr_decay_start, settings.steps)
            for opt, base in ((opt_g, settings.lr_g), (opt_d, settings.lr_d)):
                for group in opt.param_groups:
                    group["lr"] = base * factor
            log["lr_factor"] = factor
        if recipe.train_step is not None:
            def next_batch() -> dict[str, Any]:
                return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in next(data).items()}

            from train.gan.recipe import StepContext

            log.update(recipe.train_step(StepContext(step=step, generator=gen, G=G, D=D, opt_g=opt_g, opt_d=opt_d,
                                                     accelerator=accelerator, settings=settings,
                                                     next_batch=next_batch, device=device)))
        for _ in range(settings.n_critic if recipe.train_step is None else 0):
            batch = next(data)
            real = match_channels(batch["image"], config.channels).to(device)
            y = batch["label"].to(device) if conditional else None
            z = torch.randn((real.shape[0], *unwrapped_g.latent_shape), generator=gen).to(device)
            with accelerator.autocast():
                with torch.no_grad():
                    fake = G(z, y)
                real_in = augment(real, gen)
                if settings.r1_weight > 0:
                    real_in = real_in.detach().requires_grad_(True)
                d_real = D(real_in, y)
                d_fake = D(augment(fake, gen), y)
                loss_d = loss_fn.d_loss(d_real.float(), d_fake.float())
                log["loss_d"] = loss_d.item()
                if settings.gp_weight > 0:
                    gp = gradient_penalty(lambda x: D(x, y), real, fake, generator=gen)
                    loss_d = loss_d + settings.gp_weight * gp
                    log["gp"] = gp.item()
                if settings.r1_weight > 0:
                    r1 = r1_penalty(real_in, d_real.float())
                    loss_d = loss_d + settings.r1_weight / 2 * r1
                    log["r1"] = r1.item()
            opt_d.zero_grad(set_to_none=True)
            accelerator.backward(loss_d)
            opt_d.step()
            if ada is not None:
                log["ada_rt"] = ada.update(d_real)
                log["ada_p"] = ada.p
        if recipe.train_step is None:
            z = torch.randn((real.shape[0], *unwrapped_g.latent_shape), generator=gen).to(device)
            with accelerator.autocast():
                loss_g = loss_fn.g_loss(D(augment(G(z, y), gen), y).float())
            opt_g.zero_grad(set_to_none=True)
            accelerator.backward(loss_g)
            opt_g.step()
            log["loss_g"] = loss_g.item()
        if ema is not None:
            ema.update(unwrapped_g, step)
        history.append({"step": step + 1, **log})
        done = step + 1
        if accelerator.is_main_process:
            bar.set_postfix(d=f"{log['loss_d']:.3f}", g=f"{log['loss_g']:.3f}")
            if done % args.log_every == 0 or done == settings.steps:
                for k, v in log.items():
                    writer.add_scalar(f"train/{k}", v, done)
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps({"step": done, **log}) + "\n")
        if done % args.sample_every == 0 or done == settings.steps:
            sample(done)
        if done % args.ckpt_every == 0 or done == settings.steps:
            checkpoint(done)
    accelerator.wait_for_everyone()
    result: dict[str, Any] = {"out": str(out), "history": history, "steps": settings.steps}
    if accelerator.is_main_process:
        final = ema.shadow if ema is not None else unwrapped_g
        result["generator"] = str(save_native(out / "generator.safetensors", final.state_dict(), config))
        writer.close()
    return result


def main(argv: list[str] | None = None) -> None:
    with cli_errors("train_gan.py"):
        args = parse_args(argv)
        summary = train(args)
        if "generator" in summary:
            print(f"generator weights: {summary['generator']}")


if __name__ == "__main__":
    main()

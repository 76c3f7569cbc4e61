"""Fine-tuning SVD: the EDM objective of the release, and a resumable trainer on accelerate.

The objective (Karras et al. 2022 as generative-models trains SVD: v-prediction through
VScalingWithEDMcNoise, sigma_data 1):

    x0  = the clip's VAE latents (sampled posterior, scaled)        sigma ~ exp(N(p_mean, p_std^2))
    D(x; sigma) = x / (sigma^2 + 1) - sigma / sqrt(sigma^2 + 1) * F([x / sqrt(sigma^2 + 1), c], log(sigma) / 4)
    loss = (sigma^2 + 1) / sigma^2 * |D(x0 + sigma * eps; sigma) - x0|^2

conditioned as at inference on the clip's first frame: its CLIP embedding, its VAE latents after
noise augmentation (strength ~ exp(N(cond_aug_mean, cond_aug_std^2)), which the vector reports), the
clip's fps - 1 and motion bucket. Each condition is dropped (zeroed) with probability `drop_prob`, so
the fine-tuned model keeps classifier-free guidance. The VAE and the CLIP encoder stay frozen.

`SVDTrainer` runs it: accelerate (CPU, one GPU, or `accelerate launch`), mixed precision, gradient
checkpointing, EMA, atomic checkpoints and exact resume (every step's data and noise are a pure
function of (seed, step, rank)), log.jsonl and TensorBoard, sample videos.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from models.video_generation.svd.conditioning import svd_vector
from utils.errors import UserError


@dataclass(frozen=True)
class SVDTrainConfig:
    """The fine-tuning recipe (hyperparameters of the objective and the run)."""

    preset: str = "tiny"
    """The model preset trained (its weights are the starting point; 'tiny' starts from random weights)."""
    steps: int = 20
    """Optimisation steps."""
    batch_size: int = 2
    """Clips per step (per process)."""
    lr: float = 1e-4
    """AdamW learning rate (constant after a linear warm-up of `warmup` steps)."""
    warmup: int = 0
    """Steps of linear learning-rate warm-up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    num_frames: int = 4
    """Frames per training clip."""
    size: tuple[int, int] = (32, 32)
    """(height, width) of the training clips."""
    p_mean: float = 0.7
    """Mean of log(sigma) of the training noise levels (community SVD fine-tuning: 0.7)."""
    p_std: float = 1.6
    """Standard deviation of log(sigma)."""
    cond_aug_mean: float = -3.0
    """Mean of log(noise augmentation strength) of the conditioning frame (exp(-3) ~ 0.05)."""
    cond_aug_std: float = 0.5
    """Standard deviation of log(noise augmentation strength)."""
    drop_prob: float = 0.1
    """Probability of zeroing the image embedding, and independently the conditioning latents (for CFG)."""
    motion_bucket_id: float = 127.0
    """Motion bucket of clips whose data does not give one."""
    ema: float = 0.999
    """EMA decay of the UNet weights (0: no EMA)."""
    mixed_precision: str = "no"
    """accelerate mixed precision: no, fp16 or bf16."""
    gradient_checkpointing: bool = False
    """Recompute block activations in the backward pass (less memory, ~30% slower)."""
    trainable: str = "all"
    """'all' the UNet's parameters, or 'temporal' only (time_stack, time_mixer, time_pos_embed)."""
    seed: int = 0
    """Seed of the run: initial weights (tiny), and every step's data and noise."""

    def check(self) -> None:
        for name in ("steps", "batch_size", "num_frames"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 <= self.drop_prob < 1 or not 0 <= self.ema < 1:
            raise UserError(f"--lr must be positive, --drop-prob and --ema in [0, 1); got {self.lr}, {self.drop_prob}, "
                            f"{self.ema}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise UserError(f"--mixed-precision must be no, fp16 or bf16, got '{self.mixed_precision}'")
        if self.trainable not in ("all", "temporal"):
            raise UserError(f"--trainable must be 'all' or 'temporal', got '{self.trainable}'")


RECIPES: dict[str, SVDTrainConfig] = {
    "tiny": SVDTrainConfig(),
    # The releases: 14 / 25 frames at 576x1024, one clip per GPU, a small constant learning rate.
    "svd": SVDTrainConfig(preset="svd", steps=10000, batch_size=1, lr=1e-5, warmup=500, num_frames=14,
                          size=(576, 1024), mixed_precision="fp16", gradient_checkpointing=True),
    "svd-xt": SVDTrainConfig(preset="svd-xt", steps=10000, batch_size=1, lr=1e-5, warmup=500, num_frames=25,
                             size=(576, 1024), mixed_precision="fp16", gradient_checkpointing=True),
}
RECIPES["svd-xt-1.1"] = replace(RECIPES["svd-xt"], preset="svd-xt-1.1")


def recipe(preset: str) -> SVDTrainConfig:
    """The default training config of a preset (the registry's `trainer`)."""
    from models.video_generation.svd.spec import SPEC

    return RECIPES[SPEC.check_preset(preset)]


# -- the objective ---------------------------------------------------------------------------------------


def edm_scalings(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c_skip, c_out, c_in, c_noise) of v-prediction with EDM c_noise (generative-models' VScalingWithEDMcNoise)."""
    s2 = sigma ** 2 + 1
    return 1 / s2, -sigma / s2.sqrt(), 1 / s2.sqrt(), 0.25 * sigma.log()


def _lognormal(n: int, mean: float, std: float, generator: torch.Generator) -> torch.Tensor:
    return torch.exp(mean + std * torch.randn(n, generator=generator))


def training_loss(unet, vae, image_encoder, batch: dict[str, Any], cfg: SVDTrainConfig,
                  generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """The EDM loss of one batch ({"video": (B, T, 3, H, W) in [-1, 1], "fps": (B,), "motion_bucket_id": (B,)});
    every random draw comes from `generator` (CPU), so a step is a pure function of its seed."""
    from utils.torch_utils import randn

    video = batch["video"]
    b, t = video.shape[:2]
    device = next(unet.parameters()).device
    dtype = torch.float32
    with torch.no_grad():
        frames = video.flatten(0, 1).to(device, vae.dtype)
        z = vae.scale_latents(vae.encode(frames).sample(generator)).float()
        x0 = z.reshape(b, t, *z.shape[1:])
        first = video[:, 0].to(device, torch.float32)
        context = image_encoder.encode(first).to(dtype)[:, None, :]
        aug = _lognormal(b, cfg.cond_aug_mean, cfg.cond_aug_std, generator)
        noisy_first = first + aug.to(device)[:, None, None, None] * randn(first.shape, generator, device)
        cond = vae.encode(noisy_first.to(vae.dtype)).mode().float()
    keep_ctx = (torch.rand(b, generator=generator) >= cfg.drop_prob).float().to(device)
    keep_cond = (torch.rand(b, generator=generator) >= cfg.drop_prob).float().to(device)
    context = context * keep_ctx[:, None, None]
    cond = (cond * keep_cond[:, None, None, None])[:, None].expand(-1, t, -1, -1, -1)
    fps = torch.as_tensor(batch["fps"], dtype=torch.float32).reshape(b)
    motion = torch.as_tensor(batch["motion_bucket_id"], dtype=torch.float32).reshape(b)
    ids = torch.stack([fps - 1, motion, aug], dim=1)
    y = svd_vector(ids, unet.config.addition_time_embed_dim).to(device)
    sigma = _lognormal(b, cfg.p_mean, cfg.p_std, generator).to(device)
    eps = randn(x0.shape, generator, device)
    c_skip, c_out, c_in, c_noise = (v.view(b, 1, 1, 1, 1) if i < 3 else v for i, v in enumerate(edm_scalings(sigma)))
    x = x0 + sigma.view(b, 1, 1, 1, 1) * eps
    out = unet(torch.cat([c_in * x, cond], dim=2), c_noise, context, y).float()
    denoised = c_skip * x + c_out * out
    weight = ((sigma ** 2 + 1) / sigma ** 2).view(b, 1, 1, 1, 1)
    loss = (weight * (denoised - x0) ** 2).mean()
    return loss, {"loss": float(loss.detach()), "sigma": float(sigma.mean()), "aug": float(aug.mean())}


def set_trainable(unet: torch.nn.Module, which: str) -> list[torch.nn.Parameter]:
    """Freeze all but the parameters to train; returns them."""
    temporal = ("time_stack", "time_mixer", "time_pos_embed")
    params = []
    for name, p in unet.named_parameters():
        on = which == "all" or any(part in name.split(".") for part in temporal)
        p.requires_grad_(on)
        if on:
            params.append(p)
    return params


# -- the trainer ------------------------------------------------------------------------------------------


RESUME_FIXED = ("seed", "batch_size", "num_frames", "size", "preset")
"""Settings a resumed run must share with its checkpoint: with the step they fix the data and the noise."""


@dataclass
class RunOptions:
    """Where and how a run writes (not part of the recipe)."""

    out: str
    data: str | None = None
    weights: str | None = None
    resume: str | None = None
    device: str | None = None
    save_every: int = 0
    sample_every: int = 0
    keep: int = 3
    log_every: int = 10
    tensorboard: bool = True
    progress: bool = True
    stride: int | None = None
    data_fps: float | None = None
    extra: dict = field(default_factory=dict)


class SVDTrainer:
    """One fine-tuning run; `run()` trains (or resumes) to `config.steps` and returns a summary."""

    def __init__(self, config: SVDTrainConfig, options: RunOptions):
        config.check()
        self.cfg, self.opts = config, options
        self.out = Path(options.out)
        self.ckpt_dir = self.out / "ckpts"
        self.resume_from = self._resume_path()

    def _resume_path(self) -> Path | None:
        from utils.training.checkpoints import latest_checkpoint

        if not self.opts.resume:
            found = latest_checkpoint(self.ckpt_dir)
            if found is not None:
                raise UserError(f"{self.out} already holds the checkpoints of a run (up to {found.name}): pass --resume "
                                "to continue it, or another --out to start afresh")
            return None
        path = latest_checkpoint(self.ckpt_dir) if self.opts.resume == "auto" else Path(self.opts.resume)
        if path is None:
            raise UserError(f"--resume: no checkpoint in {self.ckpt_dir}: start without --resume")
        if not path.exists():
            raise UserError(f"checkpoint not found: {path}: check the path, or use --resume auto")
        return path

    # -- setup ---------------------------------------------------------------------------------------------

    def _dataset(self):
        from utils.data.moving_shapes import MovingShapes
        from utils.data.video_dataset import VideoClips

        if self.opts.data is None:
            return MovingShapes(num_clips=64, num_frames=self.cfg.num_frames, size=self.cfg.size, seed=self.cfg.seed)
        return VideoClips(self.opts.data, self.cfg.num_frames, self.cfg.size, stride=self.opts.stride,
                          fps=self.opts.data_fps)

    def _pipeline(self):
        from models.video_generation.svd.pipeline import SVDPipeline

        torch.manual_seed(self.cfg.seed)
        if self.cfg.preset == "tiny" and self.opts.weights is None:
            return SVDPipeline.tiny()
        return SVDPipeline.from_pretrained(self.opts.weights, preset=self.cfg.preset, device="cpu", dtype="fp32")

    def _build(self) -> None:
        from accelerate import Accelerator

        from utils.gan.ema import EMA
        from utils.torch_utils import resolve_device

        device = resolve_device(self.opts.device)
        self.acc = Accelerator(cpu=device.type == "cpu", mixed_precision=self.cfg.mixed_precision)
        self.dataset = self._dataset()  # the data probed before any weights load
        self.pipe = self._pipeline()
        unet = self.pipe.unet.train()
        unet.enable_gradient_checkpointing(self.cfg.gradient_checkpointing)
        params = set_trainable(unet, self.cfg.trainable)
        self.ema = EMA(unet, self.cfg.ema, rampup=False) if self.cfg.ema > 0 else None
        opt = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.start = 0
        state = self._restore(unet, opt) if self.resume_from is not None else None
        self.unet, self.opt = self.acc.prepare(unet, opt)
        if state is not None and self.acc.scaler is not None and "scaler" in state:
            self.acc.scaler.load_state_dict(state["scaler"])
        self.device = self.acc.device
        for frozen in (self.pipe.vae, self.pipe.image_encoder):
            frozen.to(self.device).eval().requires_grad_(False)
        self.rank, self.world = self.acc.process_index, self.acc.num_processes

    def _restore(self, unet, opt) -> dict[str, Any]:
        from utils.training.checkpoints import load_checkpoint

        state = load_checkpoint(self.resume_from)
        saved = json.loads(state["config"])
        mine = json.loads(json.dumps(asdict(self.cfg)))
        changed = [f"{k} {saved.get(k)!r}" for k in RESUME_FIXED if saved.get(k) != mine[k]]
        if changed:
            raise UserError(f"{self.resume_from.name} was trained with {', '.join(changed)}: pass the same to continue "
                            "it exactly, or start a new run in another --out")
        unet.load_state_dict(state["unet"])
        opt.load_state_dict(state["optimizer"])
        if self.ema is not None:
            if "ema" not in state:
                raise UserError(f"{self.resume_from.name} was trained without EMA: pass --ema 0 to continue it")
            self.ema.load_state_dict(state["ema"])
        self.start = int(state["step"])
        return state

    # -- pieces of the loop -----------------------------------------------------------------------------------

    def _batch(self, step: int) -> dict[str, Any]:
        from utils.training.seeding import epoch_indices

        idx = epoch_indices(len(self.dataset), self.cfg.batch_size, step, self.cfg.seed, self.rank, self.world)
        items = [self.dataset[int(i)] for i in idx]
        motion = [self.cfg.motion_bucket_id if it.get("motion_bucket_id") is None else it["motion_bucket_id"]
                  for it in items]
        return {"video": torch.stack([it["video"] for it in items]), "fps": [float(it["fps"]) for it in items],
                "motion_bucket_id": motion}

    def _lr(self, step: int) -> float:
        w = self.cfg.warmup
        return self.cfg.lr * (min(1.0, (step + 1) / w) if w > 0 else 1.0)

    def _checkpoint(self, step: int) -> None:
        from utils.training.checkpoints import checkpoint_path, prune_checkpoints, save_checkpoint

        if not self.acc.is_main_process:
            return
        state = {"step": step, "config": json.dumps(asdict(self.cfg)),
                 "unet": self.acc.unwrap_model(self.unet).state_dict(), "optimizer": self.opt.state_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.acc.scaler is not None:
            state["scaler"] = self.acc.scaler.state_dict()
        save_checkpoint(checkpoint_path(self.ckpt_dir, step), state)
        prune_checkpoints(self.ckpt_dir, self.opts.keep)

    def _final_unet(self):
        net = self.acc.unwrap_model(self.unet)
        if self.ema is not None:
            net.load_state_dict(self.ema.shadow.state_dict())
        return net

    def _sample(self, step: int, unet=None) -> Path | None:
        """A short video from the first clip's first frame, with the current (EMA) weights."""
        if not self.acc.is_main_process:
            return None
        from models.video_generation.svd.pipeline import SVDPipeline

        net = unet if unet is not None else (self.ema.shadow if self.ema is not None else self.acc.unwrap_model(self.unet))
        was = net.training
        net.eval()
        pipe = SVDPipeline(net, self.pipe.vae, self.pipe.image_encoder, self.pipe.scheduler_config, self.cfg.preset)
        first = (self.dataset[0]["video"][0] + 1) / 2
        h, w = self.cfg.size
        video = pipe(image=first, num_frames=self.cfg.num_frames, height=h, width=w, seed=self.cfg.seed,
                     steps=None if self.cfg.preset != "tiny" else 3, progress=False)
        net.train(was)
        return video.save(self.out / "samples" / f"step_{step:07d}.mp4")[0]

    # -- the loop -------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from tqdm.auto import tqdm

        from utils.training.checkpoints import write_json
        from utils.training.seeding import seed_step

        self._build()
        cfg, opts, acc = self.cfg, self.opts, self.acc
        writer = None
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json(self.out / "settings.json", {"config": asdict(cfg), "data": opts.data, "weights": opts.weights})
            self._trim_log(self.start)
            if opts.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(self.out / "tb"), purge_step=self.start or None)
        history: list[dict[str, float]] = []
        bar = tqdm(range(self.start, cfg.steps), initial=self.start, total=cfg.steps, desc="svd",
                   disable=not opts.progress or not acc.is_main_process, dynamic_ncols=True)
        for step in bar:
            gen = seed_step(cfg.seed, step, self.rank)
            for group in self.opt.param_groups:
                group["lr"] = self._lr(step)
            batch = self._batch(step)
            with acc.autocast():
                loss, log = training_loss(self.unet, self.pipe.vae, self.pipe.image_encoder, batch, cfg, gen)
            if not math.isfinite(log["loss"]):
                raise UserError(f"the loss is {log['loss']} at step {step + 1}: lower --lr, or use --mixed-precision no")
            self.opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            self.opt.step()
            if self.ema is not None:
                self.ema.update(acc.unwrap_model(self.unet), step)
            done = step + 1
            history.append({"step": done, **log})
            if acc.is_main_process:
                bar.set_postfix(loss=f"{log['loss']:.4f}")
                with open(self.out / "log.jsonl", "a") as f:
                    f.write(json.dumps({"step": done, **log}) + "\n")
                if writer is not None and (done % opts.log_every == 0 or done == cfg.steps):
                    for k, v in log.items():
                        writer.add_scalar(f"train/{k}", v, done)
            if opts.save_every and done % opts.save_every == 0 and done != cfg.steps:
                self._checkpoint(done)
            if opts.sample_every and done % opts.sample_every == 0 and done != cfg.steps:
                self._sample(done)
        acc.wait_for_everyone()
        result: dict[str, Any] = {"out": str(self.out), "history": history, "steps": cfg.steps}
        if acc.is_main_process:
            self._checkpoint(cfg.steps)
            final = self._final_unet().eval()
            from models.video_generation.svd.convert import export_official

            result["weights"] = str(export_official(self.out / "svd_finetuned.safetensors", final, self.pipe.vae,
                                                    self.pipe.image_encoder))
            sample = self._sample(cfg.steps, final)
            result["sample"] = str(sample) if sample else None
            if writer is not None:
                writer.close()
        return result

    def _trim_log(self, step: int) -> None:
        """Keep the log lines up to `step` (a run stopped after its last checkpoint logged later steps)."""
        from utils.io import atomic_path

        path = self.out / "log.jsonl"
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("step", 0) <= step:
                kept.append(line)
        with atomic_path(path) as tmp:
            tmp.write_text("".join(k + "\n" for k in kept))


__all__ = ["RECIPES", "RunOptions", "SVDTrainConfig", "SVDTrainer", "edm_scalings", "recipe", "set_trainable",
           "training_loss"]

"""Training the motion modules (AnimateDiff's recipe): the image UNet, the VAE and the text encoder frozen.

The objective is the image model's own: SD 1.5 is a DDPM epsilon model, so the motion modules learn to
make the frozen UNet's noise prediction right for whole clips,

    x0 = the clip's frames through the VAE (posterior sampled, scaled)      t ~ U{0..999}, one per clip
    x_t = sqrt(a_t) x0 + sqrt(1 - a_t) e                                     (AnimateDiff's linear betas)
    loss = |MotionUNet(x_t, t, text) - e|^2     (optionally min-SNR weighted)

with the clip's prompt (video folders carry no captions: one `prompt` for every clip, empty by default;
AnimateDiff's captioned WebVid is the release's data). Only the MotionAdapter's parameters reach the
optimiser and have `requires_grad`; the trainer checks after every step that no image-model parameter got a
gradient. A new adapter (the tiny preset) starts with zero output projections, as AnimateDiff's
`zero_initialize`: at step 0 the MotionUNet equals the image UNet frame by frame. The release presets
fine-tune the preset's released adapter (or `--weights`) on SD 1.5 (or `--base`).

The result is written as a motion adapter file in AnimateDiff's released layout
(`motion_adapter.safetensors`, `...motion_modules.i.temporal_transformer.*` keys with their frame tables),
which `convert.load_adapter`, `RunwayGen3Pipeline.from_pretrained` and `generate_video.py --model runway_gen3
--weights` load. The released layout stores no head count or norm groups (8 and 32 in every release, and what
a loader assumes): a new adapter is built with those, so its file reads back exactly.

`MotionTrainer` runs it with SVD's trainer machinery (models/video_generation/svd/training.py): accelerate,
atomic checkpoints (the adapter and the optimiser only) and exact resume (a step's data and noise are a
pure function of (seed, step, rank)), the refusal to write over another run, log.jsonl, TensorBoard and
sample videos.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from models.video_generation.svd.training import RESUME_FIXED, RunOptions, SVDTrainer
from utils.errors import UserError

ADAPTER_FILE = "motion_adapter.safetensors"


@dataclass(frozen=True)
class MotionTrainConfig:
    """The recipe of a motion-module training run."""

    preset: str = "tiny"
    """The model preset: 'tiny' (tiny SD 1.5, a new adapter) or a release (its adapter fine-tuned)."""
    steps: int = 20
    """Optimisation steps."""
    batch_size: int = 2
    """Clips per step (per process)."""
    lr: float = 1e-3
    """AdamW learning rate (constant after `warmup` linear steps)."""
    warmup: int = 0
    """Steps of linear learning-rate warm-up."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient norm clipping of the motion parameters (0: none)."""
    num_frames: int = 4
    """Frames per training clip."""
    size: tuple[int, int] = (32, 32)
    """(height, width) of the training clips."""
    snr_gamma: float | None = None
    """min-SNR gamma of the loss weights (None: plain mean squared error)."""
    prompt: str = ""
    """The text every clip is trained with."""
    mixed_precision: str = "no"
    """accelerate mixed precision: no, fp16 or bf16."""
    gradient_checkpointing: bool = False
    """Recompute the blocks' activations in the backward pass (less memory)."""
    seed: int = 0
    """Seed of the run: a new adapter's weights, every step's data and noise."""

    def check(self) -> None:
        for name in ("steps", "batch_size", "num_frames"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.num_frames > 32:
            raise UserError(f"--num-frames {self.num_frames}: motion adapters hold 32 frame positions, ask for at most 32")
        if self.lr <= 0 or self.max_grad_norm < 0 or self.warmup < 0:
            raise UserError(f"--lr must be positive, --max-grad-norm and --warmup at least 0; got {self.lr}, "
                            f"{self.max_grad_norm}, {self.warmup}")
        if self.snr_gamma is not None and self.snr_gamma <= 0:
            raise UserError(f"--snr-gamma must be positive, got {self.snr_gamma}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise UserError(f"--mixed-precision must be no, fp16 or bf16, got '{self.mixed_precision}'")


# AnimateDiff's configs/training/v1/training.yaml and train.py: lr 1e-4 constant, 16 frames of 256 px (its
# data sampled with stride 4: pass --stride 4), AdamW with weight decay 1e-2, gradients clipped at 1, fp16;
# one clip per GPU here (the release trained with more), gradient checkpointing on.
_RELEASE = MotionTrainConfig(steps=10000, batch_size=1, lr=1e-4, weight_decay=1e-2, num_frames=16, size=(256, 256),
                             mixed_precision="fp16", gradient_checkpointing=True)
RECIPES: dict[str, MotionTrainConfig] = {
    "tiny": MotionTrainConfig(),
    "v15-v2": replace(_RELEASE, preset="v15-v2"),
    "v15-v3": replace(_RELEASE, preset="v15-v3"),
}


def recipe(preset: str) -> MotionTrainConfig:
    """The default training config of a preset (the registry's `trainer`)."""
    from models.video_generation.runway_gen3.spec import SPEC

    preset = SPEC.check_preset(preset)
    if preset not in RECIPES:
        raise UserError(f"training the motion modules of '{preset}' (SDXL) is not built: train an SD 1.5 preset "
                        f"({', '.join(RECIPES)})")
    return RECIPES[preset]


# -- the pieces -----------------------------------------------------------------------------------------


def new_adapter(unet_config, max_frames: int = 32, seed: int = 0):
    """A fresh MotionAdapter for `unet_config` with the released head count and norm groups (8, 32) and zero
    output projections (each module starts as the identity)."""
    from models.video_generation.runway_gen3.motion import MotionAdapter, MotionAdapterConfig
    from utils.torch_utils import local_seed

    chans = tuple(unet_config.level_channels)
    if any(c % 32 for c in chans):
        raise UserError(f"UNet widths {chans} do not split into 32 norm groups and 8 heads (the released adapter "
                        "layout's): train on an SD 1.5-shaped UNet")
    with local_seed(seed):
        adapter = MotionAdapter(MotionAdapterConfig(block_out_channels=chans,
                                                    motion_layers_per_block=unet_config.num_res_blocks,
                                                    motion_num_attention_heads=8, motion_norm_num_groups=32,
                                                    motion_max_seq_length=max_frames))
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if ".proj_out." in name:
                p.zero_()
    return adapter


def objective(snr_gamma: float | None = None):
    """The DDPM epsilon objective over AnimateDiff's training schedule (linear betas 0.00085..0.012)."""
    from models.video_generation.runway_gen3.pipeline import ANIMATEDIFF_SCHEDULER
    from utils.diffusion import scheduler_from_diffusers_config
    from utils.diffusion.training.objectives import NoisePrediction

    sched = scheduler_from_diffusers_config({**ANIMATEDIFF_SCHEDULER, "_class_name": "DDPMScheduler"})
    return NoisePrediction(sched.alphas_cumprod(), "epsilon", snr_gamma)


def training_loss(model, vae, context: torch.Tensor, video: torch.Tensor, target,
                  generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """The noise-prediction loss of a batch of clips (B, F, 3, H, W) in [-1, 1]; `context` (1 or B, L, D) text
    states; every random draw from the CPU `generator`."""
    b, f = video.shape[:2]
    device = context.device
    with torch.no_grad():
        z = vae.scale_latents(vae.encode(video.flatten(0, 1).to(device, vae.dtype)).sample(generator)).float()
    x0 = z.reshape(b, f, *z.shape[1:])
    ctx = context.expand(b, -1, -1)

    def predict(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(x_t, t, ctx).float()

    loss, log = target.loss(predict, x0, generator)
    return loss, {"loss": float(loss.detach()), **log}


def save_adapter(path: str | Path, adapter) -> Path:
    """The adapter as a released-layout AnimateDiff file (safetensors, written atomically)."""
    from safetensors.torch import save_file

    from models.video_generation.runway_gen3.convert import native_to_released
    from utils.io import atomic_path

    sd = {k: v.detach().float().cpu().clone() for k, v in native_to_released(adapter.state_dict()).items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt", "model": "animatediff-motion-adapter"})
    return path


def image_parameters(unet: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """The MotionUNet's parameters that are not the adapter's (the frozen image UNet)."""
    mine = {id(p) for p in unet.adapter.parameters()}
    return [(n, p) for n, p in unet.named_parameters() if id(p) not in mine]


# -- the trainer ----------------------------------------------------------------------------------------


class MotionTrainer(SVDTrainer):
    """One run; `run()` trains (or resumes) the motion modules to `config.steps` and returns a summary."""

    def __init__(self, config: MotionTrainConfig, options: RunOptions):
        super().__init__(config, options)

    def _pipeline(self):
        """(SD 1.5 pipeline, adapter): the tiny SD 1.5 and a new adapter, or a base and a released one."""
        from models.image_generation.stable_diffusion.pipeline_sd15 import SD15Pipeline
        from models.video_generation.runway_gen3.convert import load_adapter
        from models.video_generation.runway_gen3.spec import BASE_MODEL

        tiny = self.cfg.preset == "tiny"
        base = self.opts.extra.get("base")
        if tiny and self.opts.weights is None:
            adapter = new_adapter(SD15Pipeline.tiny().unet.config, seed=self.cfg.seed)
        else:
            adapter = load_adapter(self.opts.weights, self.cfg.preset)  # small: a bad file fails before the base
        if base is None and tiny:
            image = SD15Pipeline.tiny()
        else:
            image = SD15Pipeline.from_pretrained(base or BASE_MODEL, device="cpu", dtype="fp32")
        return image, adapter.float()

    def _build(self) -> None:
        from accelerate import Accelerator

        from models.video_generation.runway_gen3.unet_motion import MotionUNet
        from utils.torch_utils import resolve_device

        device = resolve_device(self.opts.device)
        self.acc = Accelerator(cpu=device.type == "cpu", mixed_precision=self.cfg.mixed_precision)
        self.image, adapter = self._pipeline()
        if self.cfg.num_frames > adapter.config.motion_max_seq_length:
            raise UserError(f"--num-frames {self.cfg.num_frames} is more than this adapter's "
                            f"{adapter.config.motion_max_seq_length} frame positions")
        self.dataset = self._dataset()
        for frozen in (self.image.unet, self.image.vae, self.image.text_encoder):
            frozen.eval().requires_grad_(False)
        model = MotionUNet(self.image.unet, adapter)
        adapter.train().requires_grad_(True)
        if self.cfg.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        params = list(adapter.parameters())
        opt = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.start = 0
        state = self._restore(adapter, opt) if self.resume_from is not None else None
        self.unet, self.opt = self.acc.prepare(model, opt)
        if state is not None and self.acc.scaler is not None and "scaler" in state:
            self.acc.scaler.load_state_dict(state["scaler"])
        self.device = self.acc.device
        self.image.vae.to(self.device)
        self.image.text_encoder.to(self.device)
        self.params = params
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        self.objective = objective(self.cfg.snr_gamma)
        with torch.no_grad():  # a plain tensor (the encoder may run in inference mode)
            self.context = self.image.text_encoder.encode([self.cfg.prompt]).last_hidden_state.float().clone()

    def _restore(self, adapter, opt) -> dict[str, Any]:
        from utils.training.checkpoints import load_checkpoint

        state = load_checkpoint(self.resume_from)
        saved = json.loads(state["config"])
        mine = json.loads(json.dumps(asdict(self.cfg)))
        changed = [f"{k} {saved.get(k)!r}" for k in (*RESUME_FIXED, "prompt") if saved.get(k) != mine[k]]
        if changed:
            raise UserError(f"{self.resume_from.name} was trained with {', '.join(changed)}: pass the same to continue "
                            "it exactly, or start a new run in another --out")
        if "adapter" not in state:
            raise UserError(f"{self.resume_from.name} is not a runway_gen3 motion-module checkpoint: pass one of "
                            "this model's runs")
        adapter.load_state_dict(state["adapter"])
        opt.load_state_dict(state["optimizer"])
        self.start = int(state["step"])
        return state

    def _batch(self, step: int) -> dict[str, Any]:
        from utils.training.seeding import epoch_indices

        idx = epoch_indices(len(self.dataset), self.cfg.batch_size, step, self.cfg.seed, self.rank, self.world)
        return {"video": torch.stack([self.dataset[int(i)]["video"] for i in idx])}

    @property
    def adapter(self):
        return self.acc.unwrap_model(self.unet).adapter

    def _checkpoint(self, step: int) -> None:
        from utils.training.checkpoints import checkpoint_path, prune_checkpoints, save_checkpoint

        if not self.acc.is_main_process:
            return
        state = {"step": step, "config": json.dumps(asdict(self.cfg)), "adapter": self.adapter.state_dict(),
                 "optimizer": self.opt.state_dict()}
        if self.acc.scaler is not None:
            state["scaler"] = self.acc.scaler.state_dict()
        save_checkpoint(checkpoint_path(self.ckpt_dir, step), state)
        prune_checkpoints(self.ckpt_dir, self.opts.keep)

    def pipeline(self):
        """A RunwayGen3Pipeline of the frozen image model and the adapter as trained so far."""
        from models.video_generation.runway_gen3.pipeline import RunwayGen3Pipeline

        return RunwayGen3Pipeline(self.acc.unwrap_model(self.unet), self.image.vae, self.image.text_encoder,
                                  preset=self.cfg.preset)

    def _sample(self, step: int, unet=None) -> Path | None:
        """A short text-to-video clip with the current adapter (its prompt, the run's seed)."""
        if not self.acc.is_main_process:
            return None
        net = self.acc.unwrap_model(self.unet)
        was = net.adapter.training
        net.adapter.eval()
        h, w = self.cfg.size
        video = self.pipeline()(self.cfg.prompt, num_frames=self.cfg.num_frames, height=h, width=w, seed=self.cfg.seed,
                                steps=3 if self.cfg.preset == "tiny" else None, progress=False)
        net.adapter.train(was)
        return video.save(self.out / "samples" / f"step_{step:07d}.mp4")[0]

    def _check_frozen(self) -> None:
        net = self.acc.unwrap_model(self.unet)
        moved = [n for n, p in image_parameters(net) if p.requires_grad or p.grad is not None]
        if moved:
            raise RuntimeError(f"image-model parameters took part in training: {moved[:3]}")

    def run(self) -> dict[str, Any]:
        from tqdm.auto import tqdm

        from utils.training.checkpoints import write_json
        from utils.training.seeding import seed_step

        self._build()
        cfg, opts, acc = self.cfg, self.opts, self.acc
        writer = None
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json(self.out / "settings.json", {"config": asdict(cfg), "data": opts.data, "weights": opts.weights,
                                                    "base": opts.extra.get("base")})
            self._trim_log(self.start)
            if opts.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(self.out / "tb"), purge_step=self.start or None)
        history: list[dict[str, float]] = []
        bar = tqdm(range(self.start, cfg.steps), initial=self.start, total=cfg.steps, desc="runway_gen3",
                   disable=not opts.progress or not acc.is_main_process, dynamic_ncols=True)
        for step in bar:
            gen = seed_step(cfg.seed, step, self.rank)
            for group in self.opt.param_groups:
                group["lr"] = self._lr(step)
            video = self._batch(step)["video"]
            with acc.autocast():
                loss, log = training_loss(self.unet, self.image.vae, self.context, video, self.objective, gen)
            if not math.isfinite(log["loss"]):
                raise UserError(f"the loss is {log['loss']} at step {step + 1}: lower --lr, or use --mixed-precision no")
            self.opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            if cfg.max_grad_norm > 0:
                acc.clip_grad_norm_(self.params, cfg.max_grad_norm)
            self.opt.step()
            self._check_frozen()
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
            self.adapter.eval()
            result["weights"] = str(save_adapter(self.out / ADAPTER_FILE, self.adapter))
            sample = self._sample(cfg.steps)
            result["sample"] = str(sample) if sample else None
            if writer is not None:
                writer.close()
        return result


def enable_gradient_checkpointing(model) -> None:
    """Recompute each image block and motion module in the backward pass (the layers MotionUNet calls)."""
    from utils.diffusion.training.recipe import checkpoint_blocks

    unet = model.unet
    layers = [*unet.input_blocks, *unet.middle_block, *(layer for block in unet.output_blocks for layer in block)]
    checkpoint_blocks([*layers, *(m for m in model.adapter.modules() if type(m).__name__ == "MotionModule")])


__all__ = ["ADAPTER_FILE", "MotionTrainConfig", "MotionTrainer", "RECIPES", "enable_gradient_checkpointing",
           "image_parameters", "new_adapter", "objective", "recipe", "save_adapter", "training_loss"]

"""The diffusion training loop every image diffusion model of the zoo trains through
(train/train_diffusion.py is its command line).

`DiffusionTrainer(config, training, options).run()` fine-tunes a pipeline's denoiser in full, trains a
LoRA (peft) on it and optionally on its CLIP text encoders, or runs DreamBooth (a LoRA on instance images
with an identifier prompt plus the prior-preservation loss on class images the model makes itself). It
runs on accelerate (CPU, one GPU, `accelerate launch` with DDP, FSDP or DeepSpeed), with mixed precision,
gradient checkpointing and accumulation, EMA (full mode), 8-bit AdamW (bitsandbytes on CUDA), caching of
latents and text features, TensorBoard (`tb/`), sample grids (`samples/`), `log.jsonl`, atomic checkpoints
and exact resume: every micro-step's data, crops, flips, caption dropout, timesteps and noise are a pure
function of (seed, micro-step, rank) (`utils.training.seeding`), so a run killed after step k and resumed
logs the same losses as one that never stopped.

Outputs: `lora.safetensors` (diffusers/peft format, or kohya with `lora_format='kohya'`; loads with
`pipe.load_lora` and diffusers' `load_lora_weights`), or in full mode `<denoiser>.safetensors` (the native
official-layout weights with their config, EMA weights when EMA is on).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from utils.diffusion.training.config import RESUME_FIXED, ModelTraining, TrainConfig
from utils.errors import UserError

ADAPTER = "trained"
"""The peft adapter name of what a LoRA run trains."""

RUN_ARTEFACTS = ("checkpoints", "samples", "tb", "log.jsonl", "settings.json", "lora.safetensors",
                 "unet.safetensors", "transformer.safetensors")


@dataclass
class RunOptions:
    """Where and how often a run writes, and what it reads; none of it changes the numbers."""

    out: Path
    """Output folder (checkpoints/, samples/, tb/, log.jsonl, settings.json, the trained weights)."""
    data: str | None = None
    """A folder of captioned images; None: the built-in captioned shapes."""
    weights: str | None = None
    """The weights to start from (default: the preset's; 'tiny' random)."""
    caption_column: str | None = None
    """The metadata.jsonl column holding captions (default: text, caption or prompt)."""
    resume: str | None = None
    """'auto' (the latest checkpoint in out/checkpoints) or a checkpoint path."""
    overwrite: bool = False
    """A fresh run into a folder holding another run deletes that run's files first (else it is refused)."""
    log_every: int = 10
    """Steps between TensorBoard scalars."""
    sample_every: int = 0
    """Steps between sample grids (0: at the end only)."""
    ckpt_every: int = 0
    """Steps between checkpoints (0: at the end only)."""
    keep: int = 3
    """Checkpoints kept."""
    workers: int = 0
    """Data loader worker processes."""
    cpu: bool = False
    """Train on the CPU even when a GPU is visible."""
    progress: bool = True
    """Show progress bars."""
    lora_format: str = "diffusers"
    """The format of lora.safetensors: 'diffusers' (peft, diffusers' names) or 'kohya'."""
    cache_dir: str | None = None
    """Where caches live (default: <out>/cache)."""
    eval_batches: int = 0
    """Batches of a fixed held-out draw (the same images, timesteps and noise every time) whose mean loss
    is measured before training and at the end (`eval_loss` in the summary and log; 0: not measured)."""


def _lr_factor(step: int, warmup: int) -> float:
    return 1.0 if warmup <= 0 else min(1.0, (step + 1) / warmup)


class DiffusionTrainer:
    """One training run; `run()` trains (or resumes) to `config.steps` and returns a summary."""

    def __init__(self, config: TrainConfig, training: ModelTraining, options: RunOptions):
        config.check()
        for name in ("log_every", "keep", "workers", "sample_every", "ckpt_every"):
            if getattr(options, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(options, name)}")
        if options.lora_format not in ("diffusers", "kohya"):
            raise UserError(f"--lora-format must be diffusers or kohya, got '{options.lora_format}'")
        if options.data is not None and not Path(options.data).is_dir():
            raise UserError(f"--data {options.data} is not a folder: pass a folder of images (with metadata.jsonl or "
                            ".txt captions), or leave --data out for the built-in captioned shapes")
        self.cfg, self.training, self.opts = config, training, options
        self.out = Path(options.out)
        self.ckpt_dir = self.out / "checkpoints"
        self.resume_from = self._resume_path()

    def _resume_path(self) -> Path | None:
        from utils.training.checkpoints import latest_checkpoint
        from utils.training.runs import prepare_run_dir

        resume = self.opts.resume
        prepare_run_dir(self.out, RUN_ARTEFACTS, resume=bool(resume), overwrite=self.opts.overwrite)
        if not resume:
            return None
        path = latest_checkpoint(self.ckpt_dir) if resume == "auto" else Path(resume)
        if path is None:
            raise UserError(f"--resume auto: no checkpoint in {self.ckpt_dir}: start without --resume")
        if not path.exists():
            raise UserError(f"checkpoint not found: {path}: check the path, or use --resume auto")
        return path

    # -- setup ---------------------------------------------------------------------------------------------

    def _sources(self):
        from utils.data.captioned import folder_sources, prompt_sources
        from utils.data.captioned_shapes import captioned_shapes

        dreambooth = self.cfg.mode == "dreambooth"
        src = (captioned_shapes(seed=0) if self.opts.data is None else
               folder_sources(self.opts.data, self.opts.caption_column, captions=not dreambooth))
        if dreambooth:
            src = prompt_sources(src, self.cfg.instance_prompt)
        return src

    def _buckets(self) -> list[tuple[int, int]]:
        from utils.data.buckets import make_buckets

        cfg, m = self.cfg, self.recipe.pixel_multiple
        if cfg.resolution % m:
            raise UserError(f"--resolution {cfg.resolution} must be a multiple of {m} for {cfg.model}")
        return make_buckets(cfg.resolution, m, cfg.max_ratio) if cfg.buckets else [(cfg.resolution, cfg.resolution)]

    def _weight_dtype(self) -> torch.dtype:
        return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.cfg.mixed_precision, torch.float32)

    def _build(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        from utils.data.buckets import BucketBatches
        from utils.data.captioned import CaptionedImages
        from utils.diffusion.lora import layers as L

        cfg = self.cfg
        self.acc = Accelerator(cpu=self.opts.cpu, mixed_precision=cfg.mixed_precision)
        self.device, self.rank, self.world = self.acc.device, self.acc.process_index, self.acc.num_processes
        set_seed(cfg.seed)
        weights = self.opts.weights
        try:
            pipe = self.training.load_pipeline(cfg.preset, weights)
        except UserError as err:
            if weights is None or Path(str(weights)).name in str(err):  # the message names the file already
                raise
            raise UserError(f"--weights {weights}: {err}") from None
        self.pipe = pipe
        self.recipe = self.training.make(pipe, cfg)
        self.objective = self.recipe.objective()
        den = self.recipe.denoiser
        wdt = self._weight_dtype()
        for m in self.recipe.frozen_modules():
            m.requires_grad_(False).eval()
        pipe.to(self.device, wdt if cfg.mode != "full" else None)
        if cfg.mode == "full":
            for m in self.recipe.frozen_modules():
                m.to(dtype=wdt)
        den.train()

        # data: instance/training images, and DreamBooth's class images
        buckets = self._buckets()
        self.data = CaptionedImages(self._sources(), buckets, cfg.center_crop, cfg.random_flip)
        self.batches = BucketBatches(self.data.bucket_of, cfg.batch_size, cfg.seed, self.world, "training images")
        self.class_data = self.class_batches = None
        if cfg.mode == "dreambooth" and cfg.prior_loss_weight > 0:
            self.class_data = CaptionedImages(self._class_sources(buckets), buckets, True, False)
            self.class_batches = BucketBatches(self.class_data.bucket_of, cfg.batch_size, cfg.seed + 1, self.world,
                                               "class images")

        # what trains
        self.trainable: list[tuple[str, torch.nn.Module]] = []
        self.text_trained: list[tuple[str, torch.nn.Module]] = []
        if cfg.mode == "full":
            den.requires_grad_(True)
            params = [{"params": [p for p in den.parameters() if p.requires_grad], "lr": cfg.lr}]
        else:
            den.requires_grad_(False)
            alpha = float(cfg.alpha if cfg.alpha is not None else cfg.rank)
            self.lora_names = self.recipe.lora_targets(cfg.lora_targets)
            L.inject(den, {n: (cfg.rank, alpha) for n in self.lora_names}, ADAPTER, cfg.lora_dropout)
            L.activate(den, {ADAPTER: 1.0}, trainable=[ADAPTER])
            lora_params = L.lora_parameters(den, ADAPTER)
            for p in lora_params:
                p.data = p.data.float()
            params = [{"params": lora_params, "lr": cfg.lr}]
            if cfg.train_text_encoder:
                te_lr = cfg.text_encoder_lr or cfg.lr
                for attr, module, names in self.recipe.text_lora_components():
                    module.requires_grad_(False)
                    L.inject(module, {n: (cfg.rank, alpha) for n in names}, ADAPTER, cfg.lora_dropout)
                    L.activate(module, {ADAPTER: 1.0}, trainable=[ADAPTER])
                    te_params = L.lora_parameters(module, ADAPTER)
                    for p in te_params:
                        p.data = p.data.float()
                    params.append({"params": te_params, "lr": te_lr})
                    module.train()
                    self.text_trained.append((attr, module))
                if not self.text_trained:
                    raise UserError(f"{cfg.model} has no CLIP text encoder a LoRA can train here: drop "
                                    "--train-text-encoder")
        if cfg.gradient_checkpointing:
            self.recipe.enable_gradient_checkpointing()
        self.base_lrs = [g["lr"] for g in params]
        self.ema = None
        if cfg.ema > 0:
            from utils.gan.ema import EMA

            self.ema = EMA(den, cfg.ema, rampup=False)
        opt = self._optimizer(params)
        self.start = 0
        state = self._restore(den, opt) if self.resume_from is not None else None
        prepared = self.acc.prepare(den, opt, *[m for _, m in self.text_trained])
        self.model, self.opt = prepared[0], prepared[1]
        for (attr, _), wrapped in zip(self.text_trained, prepared[2:]):
            self._owner(attr).model = wrapped  # the encoder calls its transformers model through the wrapper
        if state is not None and self.acc.scaler is not None and "scaler" in state:
            self.acc.scaler.load_state_dict(state["scaler"])
        self.caches = self._caches()

    def _owner(self, attr: str) -> Any:
        obj = self.pipe
        for part in attr.split("."):
            obj = obj[int(part)] if isinstance(obj, list) else getattr(obj, part)
        return obj

    def _optimizer(self, params: list[dict]) -> torch.optim.Optimizer:
        cfg = self.cfg
        if cfg.optimizer == "adamw8bit":
            try:
                import bitsandbytes as bnb
            except ImportError:
                raise UserError("--optimizer adamw8bit needs bitsandbytes: pip install 'cv-generative[cuda]' (CUDA "
                                "only), or use --optimizer adamw") from None
            if self.device.type != "cuda":
                raise UserError("--optimizer adamw8bit runs on CUDA only: use --optimizer adamw on the CPU")
            return bnb.optim.AdamW8bit(params, betas=cfg.adam_betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
        return torch.optim.AdamW(params, betas=cfg.adam_betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)

    def _class_sources(self, buckets):
        """DreamBooth's class images: those already in class_data, completed by the model itself."""
        from utils.data.captioned import folder_sources, prompt_sources
        from utils.data.image_folder import find_images
        from utils.io import atomic_path
        from utils.visualization.grid import to_pil

        cfg = self.cfg
        folder = Path(cfg.class_data) if cfg.class_data else self.out / "class_images"
        have = len(find_images(folder)) if folder.is_dir() else 0
        if have < cfg.num_class_images and self.acc.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)
            size = (cfg.resolution, cfg.resolution)
            for i in range(have, cfg.num_class_images):
                pixels = self.recipe.sample([cfg.class_prompt], seed=cfg.seed * 10_007 + i, steps=cfg.sample_steps,
                                            size=size)
                with atomic_path(folder / f"class_{i:05d}.png") as tmp:
                    to_pil(pixels, (0.0, 1.0))[0].save(tmp, format="PNG")
        self.acc.wait_for_everyone()
        return prompt_sources(folder_sources(folder, captions=False)[: cfg.num_class_images], cfg.class_prompt)

    def _restore(self, den, opt) -> dict[str, Any]:
        from utils.diffusion.lora import layers as L
        from utils.training.checkpoints import load_checkpoint

        cfg = self.cfg
        state = load_checkpoint(self.resume_from)
        saved = json.loads(state["settings"])
        defaults = {f.name: f.default for f in fields(TrainConfig)}
        norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731 - json keeps tuples as lists
        changed = [f"--{k.replace('_', '-')} {saved.get(k, defaults.get(k))}" for k in RESUME_FIXED
                   if norm(saved.get(k, defaults.get(k))) != norm(getattr(cfg, k))]
        if changed:
            raise UserError(f"{self.resume_from.name} was trained with {', '.join(changed)}: pass the same to continue "
                            "it exactly, or start a new run in another --out")
        if cfg.mode == "full":
            den.load_state_dict(state["denoiser"])
        else:
            for attr, module in [(self.recipe.denoiser_attr, den), *self.text_trained]:
                prefix = f"{attr}/"
                weights = {k[len(prefix):-2]: () for k in state["lora"] if k.startswith(prefix)}
                L.set_adapter_weights(module, ADAPTER, {n: (state["lora"][f"{prefix}{n}.A"], state["lora"][f"{prefix}{n}.B"])
                                                        for n in weights})
        opt.load_state_dict(state["optimizer"])
        if self.ema is not None:
            if "ema" not in state:
                raise UserError(f"{self.resume_from.name} was trained without EMA: pass --ema 0 to continue it")
            self.ema.load_state_dict(state["ema"])
        self.start = int(state["step"])
        return state

    def _caches(self) -> dict[str, Any]:
        from utils.diffusion.training.cache import DiskCache

        cfg = self.cfg
        folder = Path(self.opts.cache_dir) if self.opts.cache_dir else self.out / "cache"
        namespace = f"{cfg.model}|{cfg.preset}|{self.opts.weights}"
        caches: dict[str, Any] = {}
        datasets = [d for d in (self.data, self.class_data) if d is not None]
        if cfg.cache_latents:
            if not all(d.deterministic for d in datasets):
                raise UserError("--cache-latents needs the same crop every time: use centre crops without "
                                "--random-flip, or do not cache")
            caches["latents"] = DiskCache(folder, namespace, "latents")
            if self.acc.is_main_process:
                for d in datasets:
                    keys = [(s.key, *d.buckets[b]) for s, b in zip(d.sources, d.bucket_of)]
                    index = {k: i for i, k in enumerate(keys)}
                    keys.sort(key=lambda k: k[1:])  # one bucket size per encoder batch
                    caches["latents"].fill(keys, lambda ks, d=d, index=index: self._encode_keys(d, index, ks),
                                           progress=self.opts.progress)
        if cfg.cache_text:
            caches["text"] = DiskCache(folder, namespace, "text")
            if self.acc.is_main_process:
                prompts = sorted({s.caption or "" for d in datasets for s in d.sources} | {""})
                with torch.no_grad():
                    caches["text"].fill([(p,) for p in prompts],
                                        lambda ks: _split(self.recipe.text_features([k[0] for k in ks])),
                                        progress=self.opts.progress)
        self.acc.wait_for_everyone()
        return caches

    def _encode_keys(self, dataset, index: dict, keys: list[tuple]) -> list[dict[str, torch.Tensor]]:
        """The posterior moments of the images `keys` name, encoded a bucket size at a time."""
        out: dict[tuple, torch.Tensor] = {}
        for size in dict.fromkeys(k[1:] for k in keys):
            group = [k for k in keys if k[1:] == size]
            pixels = torch.stack([dataset[index[k]]["pixels"] for k in group]).to(self.device)
            out.update(zip(group, self.recipe.latents(pixels).cpu()))
        return [{"moments": out[k]} for k in keys]

    def _loader(self, dataset, batches, seed: int):
        from utils.data.captioned import StepBatchSampler, collate_captioned

        cfg = self.cfg
        sampler = StepBatchSampler(batches, seed, self.start * cfg.grad_accum, cfg.steps * cfg.grad_accum, self.rank)
        return iter(torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_captioned,
                                                num_workers=self.opts.workers))

    # -- one micro-step --------------------------------------------------------------------------------------

    def _features(self, captions: list[str]) -> dict[str, torch.Tensor]:
        if "text" in self.caches:
            from utils.diffusion.training.cache import stack_entries

            return {k: v.to(self.device) for k, v in stack_entries(self.caches["text"].load_many([(c,) for c in captions])).items()}
        if self.text_trained:
            return self.recipe.text_features(captions)
        with torch.no_grad():
            return self.recipe.text_features(captions)

    def _batch_loss(self, batch: dict[str, Any], gen: torch.Generator, dataset) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        if "latents" in self.caches:
            from utils.diffusion.training.cache import stack_entries

            keys = [(k, *dataset.buckets[dataset.bucket_of[i]]) for k, i in zip(batch["key"], batch["index"])]
            moments = stack_entries(self.caches["latents"].load_many(keys))["moments"].to(self.device)
        else:
            moments = self.recipe.latents(batch["pixels"].to(self.device))
        x0 = self.recipe.sample_latents(moments, gen).to(self.device)
        captions = list(batch["caption"])
        if cfg.caption_dropout > 0:
            drop = torch.rand(len(captions), generator=gen) < cfg.caption_dropout
            captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
        features = self._features(captions)
        batch = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        with self.acc.autocast():
            return self.objective.loss(lambda x_t, time: self.recipe.predict(self.model, x_t, time, features, batch),
                                       x0, gen)

    def eval_loss(self) -> float:
        """The mean loss, without gradients or dropout, over `eval_batches` fixed batches: the same images,
        timesteps and noise at every call, so two calls compare the weights alone."""
        from utils.data.captioned import collate_captioned
        from utils.training.seeding import seed_step

        modules = [self.model, *[m for _, m in self.text_trained]]
        modes = [m.training for m in modules]
        for m in modules:
            m.eval()
        total = 0.0
        try:
            with torch.no_grad():
                for i in range(self.opts.eval_batches):
                    idx = self.batches.batch(i, self.rank)
                    batch = collate_captioned([self.data[(j, 0)] for j in idx])
                    loss, _ = self._batch_loss(batch, seed_step(self.cfg.seed + 7_919, i, self.rank), self.data)
                    total += float(loss)
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)
        return total / max(self.opts.eval_batches, 1)

    # -- writing ---------------------------------------------------------------------------------------------

    def _trained_state(self) -> dict[str, Any]:
        from utils.diffusion.lora import layers as L

        den = self.acc.unwrap_model(self.model)
        if self.cfg.mode == "full":
            return {"denoiser": self.acc.get_state_dict(self.model)}
        lora = {}
        for attr, module in [(self.recipe.denoiser_attr, den), *self.text_trained]:
            for name, (a, b, _, _) in L.adapter_weights(self.acc.unwrap_model(module), ADAPTER).items():
                lora[f"{attr}/{name}.A"], lora[f"{attr}/{name}.B"] = a.cpu(), b.cpu()
        return {"lora": lora}

    def _checkpoint(self, step: int) -> None:
        from utils.training.checkpoints import checkpoint_path, prune_checkpoints, save_checkpoint

        state = {"step": step, "settings": json.dumps(asdict(self.cfg)), **self._trained_state(),
                 "optimizer": self.opt.state_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.acc.scaler is not None:
            state["scaler"] = self.acc.scaler.state_dict()
        if self.acc.is_main_process:
            save_checkpoint(checkpoint_path(self.ckpt_dir, step), state)
            prune_checkpoints(self.ckpt_dir, self.opts.keep, newest=step)

    def _prompts(self) -> list[str]:
        if self.cfg.validation_prompts:
            return list(self.cfg.validation_prompts)
        seen = list(dict.fromkeys(s.caption for s in self.data.sources if s.caption))
        return (seen or [self.cfg.instance_prompt or ""])[:4]

    def _sample(self, step: int) -> Path | None:
        from utils.visualization.grid import grid_array, save_grid

        if not self.acc.is_main_process:
            return None
        attr = self.recipe.denoiser_attr
        trained = getattr(self.pipe, attr)
        if self.ema is not None:
            setattr(self.pipe, attr, self.ema.shadow)
        for _, m in [(attr, getattr(self.pipe, attr)), *self.text_trained]:
            m.eval()
        wrapped = {a: self._owner(a).model for a, _ in self.text_trained}
        for a, module in self.text_trained:
            self._owner(a).model = module
        try:
            size = (self.cfg.resolution, self.cfg.resolution)
            pixels = self.recipe.sample(self._prompts(), seed=self.cfg.seed, steps=self.cfg.sample_steps, size=size)
        finally:
            setattr(self.pipe, attr, trained)
            for a, w in wrapped.items():
                self._owner(a).model = w
            trained.train()
            for _, m in self.text_trained:
                m.train()
        path = save_grid(pixels.float().cpu(), self.out / "samples" / f"step_{step:07d}.png", value_range=(0.0, 1.0))
        self.writer.add_image("samples", grid_array(pixels.float().cpu(), value_range=(0.0, 1.0)), step,
                              dataformats="HWC")
        return path

    def _save_outputs(self) -> dict[str, str]:
        from utils.diffusion.lora.save import save_adapter
        from utils.weights import save_native

        if not self.acc.is_main_process:
            return {}
        cfg, attr = self.cfg, self.recipe.denoiser_attr
        if cfg.mode == "full":
            model = self.ema.shadow if self.ema is not None else self.acc.unwrap_model(self.model)
            config = getattr(model, "config", None) or getattr(model, "params", None)
            path = save_native(self.out / f"{attr}.safetensors", model.state_dict(), config)
            return {"weights": str(path)}
        for a, module in self.text_trained:
            self._owner(a).model = module
        extra = {"cvgen_model": cfg.model, "cvgen_preset": cfg.preset, "cvgen_mode": cfg.mode,
                 "cvgen_rank": str(cfg.rank)}
        path = save_adapter(self.pipe.lora_components(), ADAPTER, self.out / "lora.safetensors", self.opts.lora_format,
                            extra)
        return {"lora": str(path)}

    def batch_iterators(self) -> tuple[Any, Any]:
        """(training batches, class batches or None) from the run's current step on."""
        cfg = self.cfg
        data = self._loader(self.data, self.batches, cfg.seed)
        class_data = (self._loader(self.class_data, self.class_batches, cfg.seed + 1)
                      if self.class_data is not None else None)
        return data, class_data

    def train_step(self, step: int, data, class_data=None) -> dict[str, float]:
        """One optimisation step (its `grad_accum` micro-steps) from the batch iterators; returns its log."""
        from utils.training.seeding import seed_step

        cfg, acc = self.cfg, self.acc
        params = [p for g in self.opt.param_groups for p in g["params"]]
        factor = _lr_factor(step, cfg.lr_warmup)
        for group, base in zip(self.opt.param_groups, self.base_lrs):
            group["lr"] = base * factor
        log: dict[str, float] = {"loss": 0.0, "lr": self.base_lrs[0] * factor}
        for micro in range(cfg.grad_accum):
            g = step * cfg.grad_accum + micro
            gen = seed_step(cfg.seed, g, self.rank)
            sync = micro == cfg.grad_accum - 1
            ctx = acc.no_sync(self.model) if not sync and self.world > 1 else _null()
            with ctx:
                loss, extra = self._batch_loss(next(data), gen, self.data)
                total = loss
                if class_data is not None:
                    prior, _ = self._batch_loss(next(class_data), gen, self.class_data)
                    total = loss + cfg.prior_loss_weight * prior
                    log["prior_loss"] = log.get("prior_loss", 0.0) + float(prior.detach()) / cfg.grad_accum
                acc.backward(total / cfg.grad_accum)
            log["loss"] += float(loss.detach()) / cfg.grad_accum
            for k, v in extra.items():
                log[k] = log.get(k, 0.0) + v / cfg.grad_accum
        if not math.isfinite(log["loss"]):
            raise UserError(f"the loss became {log['loss']} at step {step + 1}: lower --lr, or use bf16 instead of "
                            "fp16 mixed precision")
        if cfg.max_grad_norm > 0:
            log["grad_norm"] = float(acc.clip_grad_norm_(params, cfg.max_grad_norm))
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(acc.unwrap_model(self.model), step)
        return log

    # -- the loop --------------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from tqdm.auto import tqdm

        from utils.training.checkpoints import write_json
        from utils.training.runs import summary_writer, trim_jsonl

        if "acc" not in self.__dict__:  # not built yet (a caller may build first to look at the setup)
            self._build()
        cfg, acc, opts = self.cfg, self.acc, self.opts
        self.writer = None
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            self.writer = summary_writer(self.out / "tb", self.start)
            write_json(self.out / "settings.json", asdict(cfg))
            if self.start > 0:
                trim_jsonl(self.out / "log.jsonl", self.start)
        data, class_data = self.batch_iterators()
        history: list[dict[str, float]] = []
        samples: list[str] = []
        evals: dict[str, float] = {}
        if opts.eval_batches:
            evals["eval_loss_start"] = self.eval_loss()
        bar = tqdm(range(self.start, cfg.steps), initial=self.start, total=cfg.steps, desc=f"{cfg.model} {cfg.mode}",
                   disable=not opts.progress or not acc.is_main_process, dynamic_ncols=True)
        for step in bar:
            log = self.train_step(step, data, class_data)
            done = step + 1
            history.append({"step": done, **log})
            if acc.is_main_process:
                bar.set_postfix(loss=f"{log['loss']:.4f}")
                if done % max(opts.log_every, 1) == 0 or done == cfg.steps:
                    for k, v in log.items():
                        self.writer.add_scalar(f"train/{k}", v, done)
                with open(self.out / "log.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": done, **log}) + "\n")
            if (opts.sample_every and done % opts.sample_every == 0) or done == cfg.steps:
                path = self._sample(done)
                if path is not None:
                    samples.append(str(path))
            if (opts.ckpt_every and done % opts.ckpt_every == 0) or done == cfg.steps:
                self._checkpoint(done)
        if opts.eval_batches:
            evals["eval_loss"] = self.eval_loss()
            if acc.is_main_process:
                self.writer.add_scalar("eval/loss", evals["eval_loss"], cfg.steps)
        acc.wait_for_everyone()
        result: dict[str, Any] = {"out": str(self.out), "history": history, "steps": cfg.steps, "samples": samples,
                                  **evals}
        result.update(self._save_outputs())
        if acc.is_main_process:
            self.writer.close()
        return result


def _split(features: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    n = next(iter(features.values())).shape[0]
    return [{k: v[i].cpu() for k, v in features.items()} for i in range(n)]


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def trainable_parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["ADAPTER", "DiffusionTrainer", "RUN_ARTEFACTS", "RunOptions", "trainable_parameter_count"]

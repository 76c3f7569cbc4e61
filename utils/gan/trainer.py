"""The GAN training loop every GAN of the zoo trains through (train/train_gan.py is its command line).

`GANTrainer(settings, make_recipe, options).run()` trains on accelerate (CPU, one GPU or
`accelerate launch`), writes TensorBoard scalars, sample grids, atomic checkpoints with exact
resume (randomness is a pure function of (seed, step, rank)), log.jsonl, and the final (EMA)
generator as native safetensors.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from utils.errors import UserError
from utils.gan.recipe import GANRecipe, StepContext


@dataclass
class Settings:
    """The final configuration of a run: the recipe's defaults with the command line's overrides."""

    model: str
    """Registry name of the GAN."""
    preset: str
    """The model preset being trained."""
    dataset: str
    """'digits' (built in), another built-in dataset, or a folder of images."""
    steps: int
    """Generator steps."""
    batch_size: int
    """Images per step and process."""
    lr_g: float
    """Generator learning rate."""
    lr_d: float
    """Discriminator learning rate (TTUR when it differs from lr_g)."""
    betas: tuple[float, float]
    """Adam betas of both optimisers."""
    loss: str
    """One of utils.gan.losses.LOSSES."""
    n_critic: int
    """Discriminator steps per generator step."""
    gp_weight: float
    """WGAN-GP gradient penalty weight (0: off)."""
    r1_weight: float
    """R1 penalty weight gamma (0: off)."""
    ema_beta: float
    """Generator EMA decay (0: off)."""
    augment: str
    """DiffAugment policy, 'ada', or '' for none."""
    spectral_norm: bool
    """Spectral norm on every discriminator layer."""
    mixed_precision: str
    """'no', 'fp16' or 'bf16'."""
    seed: int
    """Seed of the initial weights, the data order and every step's noise."""
    lr_decay_start: int = 0
    """Step from which the learning rates decay linearly to 0 at the last step (0: constant)."""
    mirror: bool = False
    """Double the training set with left-right mirrored copies (NVlabs' --mirror)."""
    ada_target: float = 0.6
    """ADA's target for E[sign(D(real))] (with augment 'ada')."""
    cfg: str = ""
    """A model's architecture variant, passed to its recipe (StyleGAN's stylegan3-t / stylegan3-r / stylegan2)."""
    data_dir: str = ""
    """Where a standard dataset's files are (`--dataset mnist --data-dir DIR`, see utils/data/named.py)."""


@dataclass
class TrainerOptions:
    """Where and how often a run writes, and on what it runs; none of it changes the numbers."""

    out: Path
    """Output folder: tb/, samples/, checkpoints/, log.jsonl, settings.json, generator.safetensors."""
    resume: str | None = None
    """'auto' (the latest checkpoint in out/checkpoints) or a checkpoint path; None starts afresh."""
    log_every: int = 50
    """Steps between TensorBoard scalars."""
    sample_every: int = 500
    """Steps between sample grids."""
    ckpt_every: int = 500
    """Steps between checkpoints."""
    keep: int = 3
    """Checkpoints kept (older ones are deleted)."""
    workers: int = 0
    """Data loader worker processes."""
    cpu: bool = False
    """Train on the CPU even when a GPU is visible."""
    progress: bool = True
    """Show a progress bar."""
    overwrite: bool = False
    """A fresh run into a folder holding another run deletes that run's files first (else it is refused)."""
    metrics: str = ""
    """Scores computed during training, comma-separated: 'fid', 'is' (utils/gan/metrics_hook.py); '' none."""
    metrics_every: int = 500
    """Steps between scorings (and the last step)."""
    metrics_samples: int = 1000
    """Generated images per scoring (and dataset images in the cached reference statistics)."""
    metrics_weights: str | None = None
    """The Inception weights file for FID / IS (default: the one in the torch hub cache)."""
    wandb: bool = False
    """Mirror the scalars to Weights & Biases (needs the wandb package)."""


class StepBatches(torch.utils.data.Sampler):
    """Index batches for steps [start, stop), each a pure function of (seed, batch number, rank)."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int, rank: int, world: int):
        if n < batch_size * world:
            raise UserError(f"the dataset has {n} images, fewer than one batch of {batch_size * world}: "
                            "lower --batch-size or add images")
        self.args = (n, batch_size, seed, rank, world)
        self.start, self.stop = start, stop

    def __iter__(self) -> Iterator[list[int]]:
        from utils.training.seeding import epoch_indices

        n, b, seed, rank, world = self.args
        for i in range(self.start, self.stop):
            yield epoch_indices(n, b, i, seed, rank, world).tolist()

    def __len__(self) -> int:
        return self.stop - self.start


def load_dataset(name: str, size: int, data_dir: str = ""):
    """The training images: the built-in digits, another built-in dataset, or a folder."""
    if name == "digits":
        from utils.data.digits import DigitsDataset

        return DigitsDataset(size=size, split="train")
    from utils.data.datasets import get_dataset

    return get_dataset(name, size=size, **({"data_dir": data_dir} if data_dir else {}))


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey data for an RGB model (repeated) or RGB data for a grey model (averaged)."""
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
    """The learning-rate factor of 0-based `step`: 1 before `decay_start`, then down by 1 / (n + 1) per step
    over the n = steps - decay_start last steps, the last one at 1 / (n + 1).

    CycleGAN's linear decay (the original's `lambda_rule`, epoch_count 1, stepped after each epoch), per
    step instead of per epoch.
    """
    if decay_start <= 0:
        return 1.0
    return 1.0 - max(0, step + 1 - decay_start) / float(steps - decay_start + 1)


class StepData:
    """The loader's batches, `per_step` (n_critic) of them for each generator step.

    Step t owns batches t * per_step ... (t + 1) * per_step - 1 of the seeded order. A step that reads
    fewer (a recipe's `train_step` that takes one batch whatever n_critic is) leaves the rest unread; they
    are skipped when the next step begins. So the batches of a step never depend on what earlier steps
    read, and a resumed run reads what the uninterrupted one did.
    """

    def __init__(self, batches: Iterator[dict[str, Any]], start_step: int, per_step: int):
        self.batches, self.per_step = batches, per_step
        self.position = self.end = start_step * per_step

    def begin(self, step: int) -> None:
        first = step * self.per_step
        while self.position < first:
            next(self.batches)
            self.position += 1
        self.end = first + self.per_step

    def next(self) -> dict[str, Any]:
        if self.position >= self.end:
            raise RuntimeError(f"a training step read more than n_critic = {self.per_step} batches: a recipe's "
                               "train_step may call next_batch() at most settings.n_critic times per step")
        self.position += 1
        return next(self.batches)


RUN_ARTEFACTS = ("checkpoints", "samples", "tb", "log.jsonl", "settings.json", "generator.safetensors")
"""What a run writes into its folder: a fresh run refuses a folder holding any of them (`--overwrite` deletes them)."""

RESUME_FIXED = ("seed", "batch_size", "n_critic", "cfg")
"""Settings a resumed run must share with its checkpoint: together with the step, they fix the data and the noise."""


class GANTrainer:
    """One training run of a latent GAN: `run()` trains (or resumes) and returns a summary.

    `make_recipe()` builds the networks; it is called after the global seed is set, so the initial
    weights are a function of `settings.seed`.
    """

    def __init__(self, settings: Settings, make_recipe: Callable[[], GANRecipe], options: TrainerOptions):
        from utils.gan.losses import get_loss

        from utils.gan.augment import check_policy

        if settings.steps < 1 or settings.batch_size < 1 or settings.n_critic < 1:
            raise UserError("--steps, --batch-size and --n-critic must be at least 1")
        for name in ("log_every", "sample_every", "ckpt_every"):
            if getattr(options, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(options, name)}")
        if options.workers < 0:
            raise UserError(f"--workers must be 0 or more, got {options.workers}")
        if not settings.lr_g > 0 or not settings.lr_d > 0:
            raise UserError(f"learning rates must be positive, got --lr-g {settings.lr_g} --lr-d {settings.lr_d}")
        check_policy(settings.augment)
        self.settings, self.make_recipe, self.options = settings, make_recipe, options
        self.loss_fn = get_loss(settings.loss)
        self.out = Path(options.out)
        self.ckpt_dir = self.out / "checkpoints"
        self.resume_from = self._resume_path()

    def _resume_path(self) -> Path | None:
        """The checkpoint to resume from. The folder's rules (`utils.training.runs.prepare_run_dir`): stale
        temporaries go; a fresh run refuses a folder that holds another run unless `overwrite`."""
        from utils.training.checkpoints import latest_checkpoint
        from utils.training.runs import prepare_run_dir

        resume = self.options.resume
        prepare_run_dir(self.out, RUN_ARTEFACTS, resume=bool(resume), overwrite=self.options.overwrite)
        if not resume:
            return None
        path = latest_checkpoint(self.ckpt_dir) if resume == "auto" else Path(resume)
        if resume != "auto" and not path.exists():
            raise UserError(f"checkpoint not found: {path}: check the path, or use --resume auto")
        return path

    # -- setup ---------------------------------------------------------------------------------------

    def _build(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        from utils.gan.augment import AdaptiveAugment
        from utils.gan.ema import EMA

        s = self.settings
        self.accelerator = Accelerator(cpu=self.options.cpu, mixed_precision=s.mixed_precision)
        set_seed(s.seed)  # the initial weights come from this seed
        recipe = self.make_recipe()
        self.recipe, self.config = recipe, recipe.config
        G, D = recipe.generator, recipe.discriminator
        if s.spectral_norm:
            from utils.gan.spectral import apply_spectral_norm

            apply_spectral_norm(D)
        self.dataset = (recipe.make_dataset(s.dataset) if recipe.make_dataset is not None
                        else load_dataset(s.dataset, self.config.image_size, s.data_dir))
        if s.mirror:
            from utils.gan.mirror import MirroredDataset

            self.dataset = MirroredDataset(self.dataset)
        self.conditional = getattr(self.config, "num_classes", 0) > 0
        if self.conditional and getattr(self.dataset, "num_classes", None) in (None, 0) and s.dataset != "digits":
            raise UserError(f"{s.model} preset '{s.preset}' is class-conditional but {s.dataset} has no class "
                            "labels: use a class-per-subfolder dataset or an unconditional preset")
        schedule = (lambda step: recipe.ema_schedule(step, s)) if recipe.ema_schedule is not None else None
        self.ema = EMA(G, s.ema_beta, schedule=schedule) if s.ema_beta > 0 else None
        opt_g = torch.optim.Adam(G.parameters(), lr=s.lr_g, betas=s.betas)
        opt_d = torch.optim.Adam(D.parameters(), lr=s.lr_d, betas=s.betas)
        self.ada = AdaptiveAugment(target=s.ada_target) if s.augment == "ada" else None
        self.start = 0
        state = self._restore(G, D, opt_g, opt_d) if self.resume_from is not None else None
        self.G, self.D, self.opt_g, self.opt_d = self.accelerator.prepare(G, D, opt_g, opt_d)
        if state is not None and self.accelerator.scaler is not None and "scaler" in state:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        self.device = self.accelerator.device
        self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
        self.unwrapped_g = self.accelerator.unwrap_model(self.G)

    def _restore(self, G, D, opt_g, opt_d) -> dict[str, Any]:
        from utils.training.checkpoints import load_checkpoint

        s = self.settings
        state = load_checkpoint(self.resume_from, required=("step", "settings", "generator", "discriminator",
                                                            "opt_g", "opt_d"))
        saved = json.loads(state["settings"])
        if saved["model"] != s.model or saved["preset"] != s.preset:
            raise UserError(f"{self.resume_from} belongs to {saved['model']} preset '{saved['preset']}', not "
                            f"{s.model} '{s.preset}'")
        # these fix which batch and which noise every step gets: another value would not continue the run
        defaults = {f.name: f.default for f in fields(Settings)}  # settings older runs did not save
        changed = [f"--{key.replace('_', '-')} {saved.get(key, defaults.get(key))}" for key in RESUME_FIXED
                   if saved.get(key, defaults.get(key)) != getattr(s, key)]
        if changed:
            raise UserError(f"{self.resume_from.name} was trained with {', '.join(changed)}: pass the same to "
                            "continue it exactly, or start a new run in another --out")
        G.load_state_dict(state["generator"])
        D.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        for part, kept, flag in (("ema", self.ema, "--ema 0"), ("ada", self.ada, "the run's --augment")):
            if kept is not None and part not in state:
                raise UserError(f"{self.resume_from.name} was trained without {part.upper()}: pass {flag} to "
                                "continue it, or start a new run in another --out")
            if kept is not None:
                kept.load_state_dict(state[part])
        self.start = int(state["step"])
        return state

    def _data(self) -> StepData:
        s = self.settings
        loader = torch.utils.data.DataLoader(
            self.dataset, collate_fn=collate, num_workers=self.options.workers,
            batch_sampler=StepBatches(len(self.dataset), s.batch_size, s.seed, self.start * s.n_critic,
                                      s.steps * s.n_critic, self.rank, self.world))
        return StepData(iter(loader), self.start, s.n_critic)

    # -- writing -------------------------------------------------------------------------------------

    def _augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        from utils.gan.augment import diff_augment

        if self.ada is not None:
            return self.ada(x, gen)
        return diff_augment(x, self.settings.augment, 1.0, gen) if self.settings.augment else x

    def _checkpoint(self, step: int) -> None:
        from utils.training.checkpoints import checkpoint_path, prune_checkpoints, save_checkpoint

        acc = self.accelerator
        if not acc.is_main_process:
            return
        state = {"step": step, "settings": json.dumps(asdict(self.settings)),
                 "config": json.dumps(asdict(self.config)),
                 "generator": acc.unwrap_model(self.G).state_dict(),
                 "discriminator": acc.unwrap_model(self.D).state_dict(),
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.ada is not None:
            state["ada"] = self.ada.state_dict()
        if acc.scaler is not None:
            state["scaler"] = acc.scaler.state_dict()
        save_checkpoint(checkpoint_path(self.ckpt_dir, step), state)
        prune_checkpoints(self.ckpt_dir, self.options.keep, newest=step)  # never another run's later steps

    def _trim_log(self, step: int) -> None:
        """Keep the log lines up to `step` (a run stopped after its last checkpoint logged steps beyond it)."""
        from utils.training.runs import trim_jsonl

        trim_jsonl(self.out / "log.jsonl", step)

    def _sample(self, step: int) -> None:
        from utils.visualization.grid import grid_array, save_grid

        if not self.accelerator.is_main_process:
            return
        net = self.ema.shadow if self.ema is not None else self.unwrapped_g
        was_training = net.training
        net.eval()
        with torch.no_grad():
            images = (self.recipe.sampler(net) if self.recipe.sampler is not None
                      else net(self.fixed_z, self.fixed_y)).float().cpu()
        net.train(was_training)
        nrow = 10 if self.conditional else 8
        save_grid(images, self.out / "samples" / f"step_{step:07d}.png", nrow=nrow)
        self.writer.add_image("samples", grid_array(images, nrow=nrow), step, dataformats="HWC")

    # -- the loop ------------------------------------------------------------------------------------

    def _builtin_step(self, data: StepData, gen: torch.Generator, log: dict[str, float]) -> None:
        """n_critic discriminator updates, then one generator update (the DCGAN/WGAN-GP/R1 family)."""
        from utils.gan.penalties import gradient_penalty, r1_penalty

        s, acc, G, D = self.settings, self.accelerator, self.G, self.D
        latent_shape = self.unwrapped_g.latent_shape
        for _ in range(s.n_critic):
            batch = data.next()
            real = match_channels(batch["image"], self.config.channels).to(self.device)
            y = batch["label"].to(self.device) if self.conditional else None
            z = torch.randn((real.shape[0], *latent_shape), generator=gen).to(self.device)
            with acc.autocast():
                with torch.no_grad():
                    fake = G(z, y)
                real_in = self._augment(real, gen)
                if s.r1_weight > 0:
                    real_in = real_in.detach().requires_grad_(True)
                d_real = D(real_in, y)
                d_fake = D(self._augment(fake, gen), y)
                loss_d = self.loss_fn.d_loss(d_real.float(), d_fake.float())
                log["loss_d"] = loss_d.item()
                if s.gp_weight > 0:
                    gp = gradient_penalty(lambda x: D(x, y), real, fake, generator=gen)
                    loss_d = loss_d + s.gp_weight * gp
                    log["gp"] = gp.item()
                if s.r1_weight > 0:
                    r1 = r1_penalty(real_in, d_real.float())
                    loss_d = loss_d + s.r1_weight / 2 * r1
                    log["r1"] = r1.item()
            self.opt_d.zero_grad(set_to_none=True)
            acc.backward(loss_d)
            self.opt_d.step()
            if self.ada is not None:
                log["ada_rt"] = self.ada.update(d_real)
                log["ada_p"] = self.ada.p
        z = torch.randn((real.shape[0], *latent_shape), generator=gen).to(self.device)
        with acc.autocast():
            d_fake = D(self._augment(G(z, y), gen), y).float()
            if self.loss_fn.relativistic:  # ragan: the generator's loss also sees D's logits on real images
                with torch.no_grad():
                    d_real = D(self._augment(real, gen), y).float()
                loss_g = self.loss_fn.g_loss(d_fake, d_real)
            else:
                loss_g = self.loss_fn.g_loss(d_fake)
        self.opt_g.zero_grad(set_to_none=True)
        acc.backward(loss_g)
        self.opt_g.step()
        log["loss_g"] = loss_g.item()

    def run(self) -> dict[str, Any]:
        """Train (or resume) to `settings.steps`; returns the history and the output paths."""
        from tqdm.auto import tqdm

        from utils.training.checkpoints import write_json
        from utils.training.seeding import seed_step
        from utils.weights import save_native

        self._build()
        s, acc, opts = self.settings, self.accelerator, self.options
        data = self._data()
        self.writer = None
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            from utils.training.runs import summary_writer

            self.writer = summary_writer(self.out / "tb", self.start)  # a resumed run hides the old run's later steps
            write_json(self.out / "settings.json", asdict(s))
            if self.start > 0:
                self._trim_log(self.start)
        fixed_gen = torch.Generator().manual_seed(s.seed + 12345)
        n_show = 64 if not self.conditional else 10 * 8
        if self.recipe.sampler is None:
            self.fixed_z = torch.randn((n_show, *self.unwrapped_g.latent_shape), generator=fixed_gen).to(self.device)
        self.fixed_y = (torch.arange(n_show) % self.config.num_classes).to(self.device) if self.conditional else None
        from utils.gan.metrics_hook import Dashboards

        self.dashboards = Dashboards.attach(self)  # FID / IS during training, W&B (no-ops unless asked for)

        def next_batch() -> dict[str, Any]:
            return {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in data.next().items()}

        history: list[dict[str, float]] = []
        bar = tqdm(range(self.start, s.steps), initial=self.start, total=s.steps, desc=f"{s.model}",
                   disable=not opts.progress or not acc.is_main_process, dynamic_ncols=True)
        self.G.train()
        self.D.train()
        for step in bar:
            data.begin(step)
            gen = seed_step(s.seed, step, self.rank)
            log: dict[str, float] = {}
            if s.lr_decay_start > 0:
                factor = lr_factor(step, s.lr_decay_start, s.steps)
                for opt, base in ((self.opt_g, s.lr_g), (self.opt_d, s.lr_d)):
                    for group in opt.param_groups:
                        group["lr"] = base * factor
                log["lr_factor"] = factor
            if self.recipe.train_step is not None:
                log.update(self.recipe.train_step(StepContext(
                    step=step, generator=gen, G=self.G, D=self.D, opt_g=self.opt_g, opt_d=self.opt_d,
                    accelerator=acc, settings=s, next_batch=next_batch, device=self.device)))
            else:
                self._builtin_step(data, gen, log)
            if self.ema is not None:
                self.ema.update(self.unwrapped_g, step)
            self.dashboards.step(step + 1, log)
            history.append({"step": step + 1, **log})
            done = step + 1
            if acc.is_main_process:
                bar.set_postfix(d=f"{log['loss_d']:.3f}", g=f"{log['loss_g']:.3f}")
                if done % opts.log_every == 0 or done == s.steps:
                    for k, v in log.items():
                        self.writer.add_scalar(f"train/{k}", v, done)
                with open(self.out / "log.jsonl", "a") as f:
                    f.write(json.dumps({"step": done, **log}) + "\n")
            if done % opts.sample_every == 0 or done == s.steps:
                self._sample(done)
            if done % opts.ckpt_every == 0 or done == s.steps:
                self._checkpoint(done)
        acc.wait_for_everyone()
        result: dict[str, Any] = {"out": str(self.out), "history": history, "steps": s.steps}
        if acc.is_main_process:
            final = self.ema.shadow if self.ema is not None else self.unwrapped_g
            result["generator"] = str(save_native(self.out / "generator.safetensors", final.state_dict(),
                                                  self.config))
            self.writer.close()
        self.dashboards.close()
        return result

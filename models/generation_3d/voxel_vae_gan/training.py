"""Training of the multi-view 3D-VAE-GAN: epochs of VAE-GAN steps on accelerate, resumable from any epoch.

Each step (randomness a pure function of (seed, step, rank), so a resumed run repeats the
uninterrupted one): draw `num_views` frames of each object of the batch; encode and fuse them to
(mu, logvar); decode z = mu + sigma * eps (the reconstruction) and a z from the prior (a sample);
update D on real grids against both (only while its accuracy is below d_thresh); then update G and
E together on adv_weight * GAN loss + recon_weight * weighted BCE + kl_weight * KL, the KL weight
rising linearly from kl_weight_start to kl_weight_end over the run. Separate Adam optimisers carry
g_lr, e_lr and d_lr.

Output folder:

    checkpoints/epoch_N/     training_state.pt (everything to resume, torch.load(weights_only=True)),
                             model.safetensors (the three networks + the training mean shape), config.json
    checkpoints/latest       -> the newest epoch_N (a symlink; a copy where links are not possible)
    visualizations/epoch_N.png   input views | predicted | true grids of a few objects
    log.jsonl  settings.json  tb/ (TensorBoard)

Each epoch folder is written in a temporary folder and renamed, so an interrupted run never leaves
a half-written one.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Iterator

import torch

from models.generation_3d.voxel_vae_gan.config import TrainConfig, VoxelVAEGANConfig
from models.generation_3d.voxel_vae_gan.losses import kl_divergence, kl_weight, weighted_bce
from models.generation_3d.voxel_vae_gan.model import VoxelVAEGAN
from utils.errors import UserError

__all__ = ["VoxelVAEGANTrainer", "dataset_iou", "resolve_checkpoint", "read_training_state", "save_epoch", "baseline_threshold",
           "ARCH_KEYS", "STATE_FILE", "WEIGHTS_FILE"]

STATE_FILE = "training_state.pt"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
ARCH_KEYS = ("z_size", "cube_len", "image_size", "use_pose", "pose_dim", "pose_embed", "enc_channels", "enc_max",
             "enc_hidden", "gen_channels", "gen_min", "disc_channels", "disc_max")
"""Model config fields a checkpoint fixes (another value cannot load its weights)."""
EXACT_KEYS = ("batch_size", "num_views", "combine_type", "seed")
"""Training settings that decide each step's batch and noise: a resume with others continues, but not exactly."""


# -- checkpoints ---------------------------------------------------------------------------------------

def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The training_state.pt of an epoch folder, `latest`, a checkpoints/ folder, a run's output folder or the file."""
    p = Path(path)
    for candidate in (p, p / STATE_FILE, p / "latest" / STATE_FILE, p / "checkpoints" / "latest" / STATE_FILE):
        if candidate.is_file():
            return candidate
    if p.is_dir() and (p / WEIGHTS_FILE).is_file():
        raise UserError(f"{p} holds model weights but no {STATE_FILE}: it can be tested, not resumed")
    raise UserError(f"no checkpoint at '{p}': give an epoch folder (<output_dir>/checkpoints/epoch_N), "
                    f"<output_dir>/checkpoints/latest, or a {STATE_FILE}")


def read_training_state(path: str | os.PathLike) -> dict[str, Any]:
    from utils.training.checkpoints import load_checkpoint

    state = load_checkpoint(resolve_checkpoint(path))
    if "model_config" not in state or "encoder" not in state:
        raise UserError(f"{path} is not a voxel_vae_gan training checkpoint (it has no model_config/encoder)")
    return state


def _replace_dir(tmp: Path, final: Path) -> None:
    old = None
    if final.exists():
        old = final.with_name(f".old_{final.name}_{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _point_latest(ckpt_dir: Path, target: Path) -> None:
    latest = ckpt_dir / "latest"
    link = ckpt_dir / f".latest_{os.getpid()}"
    try:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target.name, target_is_directory=True)
        if latest.is_dir() and not latest.is_symlink():
            shutil.rmtree(latest)
        os.replace(link, latest)
    except OSError:  # no symlinks here: keep a copy
        link.unlink(missing_ok=True)
        tmp = ckpt_dir / f".latest_copy_{os.getpid()}"
        shutil.copytree(target, tmp)
        if latest.is_symlink():
            latest.unlink()
        _replace_dir(tmp, latest)


def save_epoch(ckpt_dir: Path, epoch: int, state: dict[str, Any], model: VoxelVAEGAN, mean_shape: torch.Tensor,
               info: dict[str, Any]) -> Path:
    """Write checkpoints/epoch_N atomically and point `latest` at it."""
    from safetensors.torch import save_file

    from utils.training.checkpoints import save_checkpoint

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / f"epoch_{epoch}"
    tmp = ckpt_dir / f".tmp_epoch_{epoch}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        save_checkpoint(tmp / STATE_FILE, state)
        weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        weights["mean_shape"] = mean_shape.detach().float().contiguous().cpu()
        save_file(weights, str(tmp / WEIGHTS_FILE), metadata={"config": json.dumps(asdict(model.cfg), sort_keys=True),
                                                              "format": "cv-generative"})
        (tmp / CONFIG_FILE).write_text(json.dumps(info, indent=1, sort_keys=True))
        _replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _point_latest(ckpt_dir, final)
    return final


def baseline_threshold(mean_shape: torch.Tensor, grids: torch.Tensor) -> float:
    """The threshold of the mean grid that gives the training grids their best mean IoU (0.05 steps)."""
    from utils.metrics.metrics_3d import voxel_iou

    best, best_t = -1.0, 0.5
    for t in [x / 20 for x in range(1, 20)]:
        pred = (mean_shape > t).expand_as(grids)
        iou = float(voxel_iou(pred, grids > 0.5).mean())
        if iou > best:
            best, best_t = iou, t
    return best_t


@torch.no_grad()
def dataset_iou(model: VoxelVAEGAN, dataset, num_views: int, combine_type: str = "mean", threshold: float = 0.5,
                batch_size: int = 16) -> torch.Tensor:
    """Per-object IoU (N,) of reconstructions (z = mu) from each object's default views."""
    from utils.data.co3d.dataset import collate
    from utils.metrics.metrics_3d import voxel_iou

    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(dataset), batch_size):
        idx = range(start, min(start + batch_size, len(dataset)))
        batch = collate([dataset[(i, dataset.default_views(i, num_views))] for i in idx])
        poses = batch["poses"].to(device) if model.cfg.use_pose else None
        mu, _ = model.encoder(batch["images"].to(device), poses, combine_type)
        probs = torch.sigmoid(model.generator(mu).float()).cpu()
        out.append(voxel_iou(probs, batch["voxels"] > 0.5, threshold=threshold))
    model.train(was)
    return torch.cat(out)


# -- data ----------------------------------------------------------------------------------------------

class ViewBatches(torch.utils.data.Sampler):
    """The (object, frames) items of steps [start, stop): objects from a seeded permutation per epoch, and
    `num_views` distinct frames per object, all a pure function of (seed, step, rank)."""

    def __init__(self, frames_per_item: list[int], batch_size: int, num_views: int, seed: int, start: int, stop: int,
                 rank: int = 0, world: int = 1):
        self.frames, self.b, self.v, self.seed = frames_per_item, batch_size, num_views, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world

    def batch(self, step: int) -> list[tuple[int, tuple[int, ...]]]:
        from utils.training.seeding import epoch_indices

        idx = epoch_indices(len(self.frames), self.b, step, self.seed, self.rank, self.world).tolist()
        g = torch.Generator().manual_seed((self.seed * 1_000_033 + step * 7_919 + self.rank * 104_723) % (2 ** 63))
        return [(i, tuple(torch.randperm(self.frames[i], generator=g)[:self.v].tolist())) for i in idx]

    def __iter__(self) -> Iterator[list[tuple[int, tuple[int, ...]]]]:
        for step in range(self.start, self.stop):
            yield self.batch(step)

    def __len__(self) -> int:
        return self.stop - self.start


# -- the trainer ---------------------------------------------------------------------------------------

class VoxelVAEGANTrainer:
    """Train (or resume) a VoxelVAEGAN on a Co3dVoxelDataset; `fit()` runs the epochs."""

    def __init__(self, model_cfg: VoxelVAEGANConfig, train_cfg: TrainConfig, train_set, val_set, out: str | Path,
                 resume: str | None = None, start_epoch: int | None = None, device: str | None = None,
                 workers: int = 0, progress: bool = True, tensorboard: bool = True, log_every: int = 10,
                 dataset_name: str = "", command: str = ""):
        self.model_cfg, self.cfg = model_cfg.check(), train_cfg.check()
        self.train_set, self.val_set, self.out = train_set, val_set, Path(out)
        self.ckpt_dir = self.out / "checkpoints"
        self.workers, self.progress, self.tensorboard, self.log_every = workers, progress, tensorboard, log_every
        self.dataset_name, self.command, self.device_name = dataset_name, command, device
        if start_epoch is not None and start_epoch < 0:
            raise UserError(f"--start_epoch must be 0 or more, got {start_epoch}")
        if len(train_set) < train_cfg.batch_size:
            raise UserError(f"the training set has {len(train_set)} objects, fewer than one batch of "
                            f"{train_cfg.batch_size}: lower --batch_size or add sequences")
        short = [n for i, n in enumerate(train_set.names) if train_set.num_frames(i) < train_cfg.num_views]
        if short:
            raise UserError(f"sequence '{short[0]}' has fewer frames than --num_views {train_cfg.num_views}: "
                            "lower --num_views")
        if val_set is not None and val_set.cube_len != model_cfg.cube_len:
            raise UserError("the validation set's cube_len differs from the model's")
        # resume: an explicit path, or the run's own checkpoints/latest when it exists (the seed's behaviour)
        self.state = None
        if resume is None and (self.ckpt_dir / "latest" / STATE_FILE).is_file():
            resume = str(self.ckpt_dir / "latest")
        if resume is not None:
            self.state = read_training_state(resume)
            self.resume_from = resolve_checkpoint(resume)
            saved = json.loads(self.state["model_config"])
            changed = [f"{k} {saved.get(k)}" for k in ARCH_KEYS if saved.get(k) != getattr(model_cfg, k)]
            if changed:
                raise UserError(f"{self.resume_from.parent.name} was trained with {', '.join(changed)}: pass the same "
                                "(or its config) to resume it, or start a new run in another --output_dir")
            saved_train = json.loads(self.state["train_config"])
            self.inexact = [f"{k} {saved_train.get(k)} -> {getattr(train_cfg, k)}" for k in EXACT_KEYS
                            if saved_train.get(k) != getattr(train_cfg, k)]
        self.start_epoch = int(self.state["epoch"]) if self.state is not None else 0
        if start_epoch is not None:
            self.start_epoch = start_epoch
        # read every grid now, so that a corrupt .binvox fails before anything is written
        grids = torch.stack([train_set.voxels(i) for i in range(len(train_set))])
        for i in range(len(val_set) if val_set is not None else 0):
            val_set.voxels(i)
        if self.state is not None:
            self.mean_shape = self.state["mean_shape"].float()
            self.base_t = float(self.state["baseline_threshold"])
        else:
            self.mean_shape = grids.mean(0)
            self.base_t = baseline_threshold(self.mean_shape, grids)

    # -- setup -------------------------------------------------------------------------------------

    def _build(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        cfg = self.cfg
        cpu = self.device_name == "cpu" or (self.device_name in (None, "auto") and not torch.cuda.is_available())
        self.acc = Accelerator(cpu=cpu, mixed_precision=cfg.mixed_precision)
        set_seed(cfg.seed)  # the initial weights
        model = VoxelVAEGAN(self.model_cfg)
        betas = (cfg.beta1, cfg.beta2)
        opt_e = torch.optim.Adam(model.encoder.parameters(), lr=cfg.e_lr, betas=betas)
        opt_g = torch.optim.Adam(model.generator.parameters(), lr=cfg.g_lr, betas=betas)
        opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=cfg.d_lr, betas=betas)
        if self.state is not None:
            s = self.state
            model.encoder.load_state_dict(s["encoder"])
            model.generator.load_state_dict(s["generator"])
            model.discriminator.load_state_dict(s["discriminator"])
            for opt, key in ((opt_e, "opt_e"), (opt_g, "opt_g"), (opt_d, "opt_d")):
                opt.load_state_dict(s[key])
                for group in opt.param_groups:  # the learning rates of this command line
                    group["lr"] = {"opt_e": cfg.e_lr, "opt_g": cfg.g_lr, "opt_d": cfg.d_lr}[key]
        self.model = model
        self.E, self.G, self.D, self.opt_e, self.opt_g, self.opt_d = self.acc.prepare(
            model.encoder, model.generator, model.discriminator, opt_e, opt_g, opt_d)
        if self.state is not None and self.acc.scaler is not None and "scaler" in self.state:
            self.acc.scaler.load_state_dict(self.state["scaler"])
        self.device = self.acc.device
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        self.steps_per_epoch = max(1, len(self.train_set) // (cfg.batch_size * self.world))

    def _loader(self, start: int, stop: int):
        from utils.data.co3d.dataset import collate

        frames = [self.train_set.num_frames(i) for i in range(len(self.train_set))]
        sampler = ViewBatches(frames, self.cfg.batch_size, self.cfg.num_views, self.cfg.seed, start, stop,
                              self.rank, self.world)
        return iter(torch.utils.data.DataLoader(self.train_set, batch_sampler=sampler, collate_fn=collate,
                                                num_workers=self.workers))

    # -- one step ----------------------------------------------------------------------------------

    def _step(self, batch: dict, step: int, total_steps: int) -> dict[str, float]:
        from utils.gan.losses import non_saturating_d_loss, non_saturating_g_loss
        from utils.training.seeding import seed_step

        cfg, acc = self.cfg, self.acc
        gen = seed_step(cfg.seed, step, self.rank)
        images = batch["images"].to(self.device)
        poses = batch["poses"].to(self.device) if self.model_cfg.use_pose else None
        real = batch["voxels"].to(self.device)
        B = real.shape[0]
        with acc.autocast():
            mu, logvar = self.E(images, poses, cfg.combine_type)
            eps = torch.randn(mu.shape, generator=gen).to(self.device)
            z_enc = mu + eps * torch.exp(0.5 * logvar)
            z_prior = torch.randn(mu.shape, generator=gen).to(self.device)
            logits = self.G(torch.cat([z_enc, z_prior]))
            probs = torch.sigmoid(logits.float())
            # discriminator: real grids against reconstructions and prior samples
            d_real = self.D(real).float()
            d_fake = self.D(probs.detach()).float()
            loss_d = non_saturating_d_loss(d_real, d_fake)
        d_acc = torch.cat([(d_real > 0).float(), (d_fake < 0).float()]).mean()
        d_acc = float(acc.reduce(d_acc, "mean")) if self.world > 1 else float(d_acc)
        update_d = d_acc < cfg.d_thresh
        if update_d:
            self.opt_d.zero_grad(set_to_none=True)
            acc.backward(loss_d)
            self.opt_d.step()
        progress = step / max(1, total_steps - 1)
        klw = kl_weight(progress, cfg.kl_weight_start, cfg.kl_weight_end)
        with acc.autocast():
            adv = non_saturating_g_loss(self.D(probs).float())
            recon = weighted_bce(logits[:B], real, cfg.recon_pos_weight)
            kl = kl_divergence(mu.float(), logvar.float())
            loss = cfg.adv_weight * adv + cfg.recon_weight * recon + klw * kl
        self.opt_e.zero_grad(set_to_none=True)
        self.opt_g.zero_grad(set_to_none=True)
        acc.backward(loss)
        self.opt_e.step()
        self.opt_g.step()
        return {"loss_d": loss_d.item(), "loss_g": adv.item(), "recon": recon.item(), "kl": kl.item(),
                "kl_weight": klw, "d_acc": d_acc, "d_update": float(update_d), "loss": loss.item()}

    # -- evaluation and pictures ---------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, dataset, indices: list[int], num_views: int | None = None) -> tuple[torch.Tensor, dict]:
        """Occupancy probabilities (N, L, L, L) of dataset items from their default views (z = mu)."""
        from utils.data.co3d.dataset import collate

        model = self.model
        was = model.training
        model.eval()
        batch = collate([dataset[(i, dataset.default_views(i, num_views or self.cfg.num_views))] for i in indices])
        poses = batch["poses"].to(self.device) if self.model_cfg.use_pose else None
        mu, _ = self.acc.unwrap_model(self.E)(batch["images"].to(self.device), poses, self.cfg.combine_type)
        probs = torch.sigmoid(self.acc.unwrap_model(self.G)(mu).float()).cpu()
        model.train(was)
        return probs, batch

    def validate(self) -> float | None:
        from utils.metrics.metrics_3d import voxel_iou

        if self.val_set is None or len(self.val_set) == 0:
            return None
        ious = []
        for i in range(0, len(self.val_set), 16):
            idx = list(range(i, min(i + 16, len(self.val_set))))
            probs, batch = self.predict(self.val_set, idx)
            ious.append(voxel_iou(probs, batch["voxels"] > 0.5, threshold=0.5))
        return float(torch.cat(ious).mean())

    def visualize(self, epoch: int) -> Path:
        from utils.io import atomic_path
        from utils.visualization.voxels import voxel_panel

        ds = self.val_set if self.val_set is not None and len(self.val_set) else self.train_set
        probs, batch = self.predict(ds, list(range(min(4, len(ds)))))
        rows = [(list(batch["images"][k]), probs[k], batch["voxels"][k]) for k in range(len(probs))]
        panel = voxel_panel(rows, size=96)
        path = self.out / "visualizations" / f"epoch_{epoch}.png"
        with atomic_path(path) as tmp:
            panel.save(tmp)
        if self.writer is not None:
            import numpy as np

            self.writer.add_image("visualization", np.asarray(panel), epoch, dataformats="HWC")
        return path

    def _checkpoint(self, epoch: int, step: int) -> Path:
        acc = self.acc
        state = {"epoch": epoch, "step": step, "model_config": json.dumps(asdict(self.model_cfg)),
                 "train_config": json.dumps(asdict(self.cfg)),
                 "encoder": acc.unwrap_model(self.E).state_dict(), "generator": acc.unwrap_model(self.G).state_dict(),
                 "discriminator": acc.unwrap_model(self.D).state_dict(), "opt_e": self.opt_e.state_dict(),
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                 "mean_shape": self.mean_shape, "baseline_threshold": self.base_t}
        if acc.scaler is not None:
            state["scaler"] = acc.scaler.state_dict()
        info = {"epoch": epoch, "model": asdict(self.model_cfg), "train": asdict(self.cfg),
                "baseline_threshold": self.base_t, "dataset": self.dataset_name}
        return save_epoch(self.ckpt_dir, epoch, state, self.model, self.mean_shape, info)

    def _trim_log(self, epoch: int) -> None:
        from utils.io import atomic_path

        path = self.out / "log.jsonl"
        if not path.exists():
            return
        kept = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["epoch"] <= epoch]
        with atomic_path(path) as tmp:
            tmp.write_text("".join(ln + "\n" for ln in kept))

    # -- the loop ------------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train from start_epoch to n_epochs; returns {"epochs": per-epoch logs, "out", "checkpoint"}."""
        from tqdm.auto import tqdm

        from utils.training.checkpoints import write_json

        cfg = self.cfg
        self._build()
        acc, main = self.acc, self.acc.is_main_process
        total_steps = cfg.n_epochs * self.steps_per_epoch
        self.writer = None
        if self.start_epoch >= cfg.n_epochs:
            print(f"nothing to train: the run is at epoch {self.start_epoch} and --n_epochs is {cfg.n_epochs} "
                  "(raise --n_epochs to continue it)", file=sys.stderr)
            return {"epochs": [], "out": str(self.out), "checkpoint": None}
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self.writer = SummaryWriter(str(self.out / "tb"))
                except ImportError:
                    self.writer = None
            write_json(self.out / "settings.json", {"model": asdict(self.model_cfg), "train": asdict(cfg),
                                                    "dataset": self.dataset_name, "command": self.command})
            self._trim_log(self.start_epoch)
            if self.state is not None:
                note = f" (changed: {', '.join(self.inexact)}; it continues, but not as the uninterrupted run)" \
                    if self.inexact else ""
                print(f"resuming from {self.resume_from.parent} at epoch {self.start_epoch}{note}", file=sys.stderr)
        data = self._loader(self.start_epoch * self.steps_per_epoch, total_steps)
        epochs, last_ckpt = [], None
        bar = tqdm(total=total_steps, initial=self.start_epoch * self.steps_per_epoch, desc="voxel_vae_gan",
                   disable=not self.progress or not main, dynamic_ncols=True)
        for net in (self.E, self.G, self.D):
            net.train()
        for epoch in range(self.start_epoch, cfg.n_epochs):
            t0, sums = time.perf_counter(), {}
            for i in range(self.steps_per_epoch):
                step = epoch * self.steps_per_epoch + i
                log = self._step(next(data), step, total_steps)
                for k, v in log.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, recon=f"{log['recon']:.4f}", d=f"{log['loss_d']:.3f}")
                if self.writer is not None and (step + 1) % self.log_every == 0:
                    for k, v in log.items():
                        self.writer.add_scalar(f"train/{k}", v, step + 1)
            done = epoch + 1
            row = {"epoch": done, **{k: v / self.steps_per_epoch for k, v in sums.items()},
                   "seconds": round(time.perf_counter() - t0, 3)}
            if main:
                val = self.validate()
                if val is not None:
                    row["val_iou"] = val
                if self.writer is not None:
                    for k, v in row.items():
                        if k != "epoch":
                            self.writer.add_scalar(f"epoch/{k}", v, done)
                with open(self.out / "log.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
                if cfg.vis_every and (done % cfg.vis_every == 0 or done == cfg.n_epochs):
                    self.visualize(done)
                if done % cfg.save_every == 0 or done == cfg.n_epochs:
                    last_ckpt = self._checkpoint(done, done * self.steps_per_epoch)
            epochs.append(row)
            acc.wait_for_everyone()
        bar.close()
        if self.writer is not None:
            self.writer.close()
        return {"epochs": epochs, "out": str(self.out), "checkpoint": str(last_ckpt) if last_ckpt else None}

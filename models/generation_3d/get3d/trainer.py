"""GET3D's training loop: the step of training.py repeated over a multi-view set, with the averaged
generator (G_ema), per-step seeding (exact resume), atomic checkpoints, TensorBoard, sample grids and the
silhouette IoU against held-out views.

A run folder holds ckpts/step_*.pt (G, G_ema, D, both optimisers, the configs; torch.load(weights_only=True)),
generator.safetensors (G_ema as native safetensors, the config in its metadata: what
`GET3DPipeline.from_pretrained(run)` and `generate_3d.py --weights run` load), log.jsonl, tb/ and
samples/step_*.png. `silhouette_iou`: for each held-out view, the best IoU between its silhouette and those
of `n` generated shapes seen from the same camera, averaged over the views: it rises as the generator
learns the category's shapes.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from models.generation_3d.get3d.config import RELEASED, TINY, GET3DConfig
from models.generation_3d.get3d.data import MultiViewSet
from models.generation_3d.get3d.discriminator import GET3DDiscriminator
from models.generation_3d.get3d.export import to_unit
from models.generation_3d.get3d.model import GET3DGenerator
from models.generation_3d.get3d.primitives import camera_from_angles
from models.generation_3d.get3d.render import render_mesh
from models.generation_3d.get3d.training import fake_images, train_step
from utils.errors import UserError
from utils.torch_utils import local_seed

__all__ = ["RUN_ARTEFACTS", "TRAIN_PRESETS", "GET3DTrainer", "TrainConfig", "silhouette_iou"]

RUN_ARTEFACTS = ("ckpts", "generator.safetensors", "log.jsonl", "tb", "samples", "metrics.json")
"""What a run writes into its folder (prepare_run_dir's list)."""


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe (nv-tlabs' train_3d.py options where they exist)."""

    steps: int = 300
    """Optimisation steps (one D and one G update each); GET3D counts kimg instead (--kimg)."""
    batch: int = 4
    """Real views (and generated shapes) per step; `--batch` (GET3D: 32 over 8 GPUs)."""
    resolution: int = 32
    """Training image size; `--img_res` (GET3D: 1024)."""
    lr_g: float = 0.002
    """Generator Adam learning rate; `--glr`."""
    lr_d: float = 0.002
    """Discriminator Adam learning rate; `--dlr`."""
    beta2: float = 0.99
    """Adam beta2 (beta1 is 0, as StyleGAN2's)."""
    r1_gamma: float = 40.0
    """R1 weight on the RGB branch; `--gamma` (40 cars, 80 motorbikes, 400 chairs)."""
    gamma_mask: float = 40.0
    """R1 weight on the silhouette branch (GET3D uses --gamma for both)."""
    r1_every: int = 16
    """Lazy R1: every N steps, scaled by N (GET3D's 16)."""
    ema_images: float = 10_000.0
    """Half-life of G_ema in images (GET3D's ema_kimg = 10)."""
    seed: int = 0
    """Seed of the weights, each step's batch and latents."""
    save_every: int = 100
    """Steps between checkpoints (and at the end)."""
    sample_every: int = 100
    """Steps between sample grids and held-out IoU evaluations (0: only at the end)."""
    keep: int = 3
    """Checkpoints kept (0: all)."""
    n_eval: int = 8
    """Generated shapes compared with each held-out view in `silhouette_iou`."""

    def to_dict(self) -> dict:
        return asdict(self)


TRAIN_PRESETS = {
    "tiny": TrainConfig(steps=300, batch=4, resolution=32, lr_g=0.002, lr_d=0.001, r1_gamma=10.0, gamma_mask=10.0,
                        r1_every=4, ema_images=200.0, save_every=100, sample_every=50, n_eval=16),
    "shapenet-car": TrainConfig(steps=625_000, batch=32, resolution=1024, r1_gamma=40.0, gamma_mask=40.0,
                                save_every=2000, sample_every=2000),
    "shapenet-motorbike": TrainConfig(steps=625_000, batch=32, resolution=1024, r1_gamma=80.0, gamma_mask=80.0,
                                      save_every=2000, sample_every=2000),
    "shapenet-chair": TrainConfig(steps=625_000, batch=32, resolution=1024, r1_gamma=400.0, gamma_mask=400.0,
                                  save_every=2000, sample_every=2000),
    "shapenet-table": TrainConfig(steps=625_000, batch=32, resolution=1024, r1_gamma=400.0, gamma_mask=400.0,
                                  save_every=2000, sample_every=2000),
}
"""Recipes per preset: the released models' (the README's commands; 20 M images at batch 32) and a CPU one."""


def model_config(preset: str, resolution: int) -> GET3DConfig:
    base = TINY if preset == "tiny" else RELEASED["shapenet-chair" if preset == "shapenet-table" else preset]
    return replace(base, img_resolution=resolution)


def build_discriminator(preset: str, cfg: GET3DConfig, batch: int, device: torch.device) -> GET3DDiscriminator:
    if preset == "tiny":
        return GET3DDiscriminator(c_dim=cfg.c_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels,
                                  channel_base=128, channel_max=32, num_fp16_res=0,
                                  mbstd_group_size=math.gcd(batch, 4))
    return GET3DDiscriminator(c_dim=cfg.c_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels,
                              num_fp16_res=4 if device.type == "cuda" else 0, mbstd_group_size=math.gcd(batch, 4))


@torch.no_grad()
def silhouette_iou(G: GET3DGenerator, views: MultiViewSet, n: int = 8, seed: int = 0, chunk: int = 16) -> float:
    """Mean over `views` of the best IoU between a view's silhouette and `n` generated shapes' at its camera."""
    if len(views) == 0:
        return float("nan")
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, G.cfg.z_dim, generator=gen)
    device = next(G.parameters()).device
    meshes, _ = G.generate_meshes(z[:, 0].to(device), z[:, 1].to(device))
    res = views.masks.shape[-1]
    mv = camera_from_angles(views.angles[:, 0], views.angles[:, 1]).to(device)
    real = views.masks[:, 0].to(device) > 0.5
    best = torch.zeros(len(views), device=device)
    for v, f in meshes:
        for i in range(0, len(views), chunk):
            fake = render_mesh(v, f, mv[i:i + chunk], res, soft=False)["hard_mask"][..., 0] > 0.5 if f.numel() else \
                torch.zeros_like(real[i:i + chunk])
            inter = (fake & real[i:i + chunk]).flatten(1).sum(1).float()
            union = (fake | real[i:i + chunk]).flatten(1).sum(1).float().clamp(min=1)
            best[i:i + chunk] = torch.maximum(best[i:i + chunk], inter / union)
    return float(best.mean())


class GET3DTrainer:
    """Trains G and D of `preset` on `train`; `held_out` views measure the silhouette IoU."""

    def __init__(self, preset: str, cfg: TrainConfig, train: MultiViewSet, held_out: MultiViewSet | None, out: Path,
                 device: torch.device, tensorboard: bool = True):
        if len(train) < cfg.batch:
            raise UserError(f"{len(train)} training views is fewer than --batch {cfg.batch}: lower --batch or add views")
        self.preset, self.cfg, self.train, self.held_out = preset, cfg, train, held_out
        self.out, self.device, self.tensorboard = Path(out), device, tensorboard
        self.model_cfg = model_config(preset, cfg.resolution)
        with local_seed(cfg.seed):
            self.G = GET3DGenerator(self.model_cfg).to(device)
            self.D = build_discriminator(preset, self.model_cfg, cfg.batch, device).to(device)
        self.G_ema = GET3DGenerator(self.model_cfg).to(device).requires_grad_(False)
        self.G_ema.load_state_dict(self.G.state_dict())
        betas = (0.0, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=betas)
        self.step = 0
        gen = torch.Generator().manual_seed(cfg.seed + 12345)  # the sample grid's fixed latents
        self.sample_z = torch.randn(4, 2, self.model_cfg.z_dim, generator=gen)

    # -- checkpoints ------------------------------------------------------------------------------------

    def state(self) -> dict:
        return {"G": self.G.state_dict(), "G_ema": self.G_ema.state_dict(), "D": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "step": self.step,
                "preset": self.preset, "train_config": json.dumps(self.cfg.to_dict()),
                "model_config": json.dumps(self.model_cfg.to_dict())}

    def save(self) -> Path:
        from utils.training import checkpoint_path, prune_checkpoints, save_checkpoint
        from utils.weights.native import save_native

        path = save_checkpoint(checkpoint_path(self.out / "ckpts", self.step), self.state())
        save_native(self.out / "generator.safetensors", self.G_ema.state_dict(), self.model_cfg)
        prune_checkpoints(self.out / "ckpts", self.cfg.keep, newest=self.step)
        return path

    def load(self, path: Path) -> None:
        from utils.training import load_checkpoint

        s = load_checkpoint(path, required=("G", "G_ema", "D", "opt_g", "opt_d", "step", "model_config"))
        if s.get("preset") != self.preset or json.loads(s["model_config"]) != self.model_cfg.to_dict():
            raise UserError(f"{path} is a checkpoint of preset {s.get('preset')!r} at another size: resume with "
                            "the preset and --resolution it was trained with, or start a new --out")
        self.G.load_state_dict(s["G"])
        self.G_ema.load_state_dict(s["G_ema"])
        self.D.load_state_dict(s["D"])
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        self.step = int(s["step"])

    # -- the loop ---------------------------------------------------------------------------------------

    def update_ema(self) -> None:
        beta = 0.5 ** (self.cfg.batch / max(self.cfg.ema_images, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.lerp_(p, 1 - beta)
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        from utils.training import epoch_indices

        idx = epoch_indices(len(self.train), self.cfg.batch, step, self.cfg.seed)
        real = torch.cat([self.train.images[idx] * 2 - 1, self.train.masks[idx]], 1)  # GET3D's colours: [-1, 1]
        return real.to(self.device), self.train.angles[idx].to(self.device)

    @torch.no_grad()
    def sample_grid(self) -> Tensor:
        """(3, 2R, 4R) renders of 4 fixed latents by G_ema from two cameras: RGB on top, silhouettes below."""
        z = self.sample_z.to(self.device)
        angles = torch.tensor([[0.6, 1.2]] * 4, device=self.device)
        img, _ = fake_images(self.G_ema, z[:, 0], z[:, 1], angles, self.cfg.resolution)
        rgb, mask = to_unit(img[:, :3]), img[:, -1:].expand(-1, 3, -1, -1)
        return torch.cat([torch.cat(list(rgb), -1), torch.cat(list(mask), -1)], -2).cpu()

    def write_samples(self) -> Path:
        from PIL import Image

        from utils.io import atomic_path

        grid = (self.sample_grid().clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype("uint8")
        path = self.out / "samples" / f"step_{self.step:07d}.png"
        with atomic_path(path) as tmp:
            Image.fromarray(grid).save(tmp, format="PNG")
        return path

    def evaluate(self) -> dict:
        iou = silhouette_iou(self.G_ema, self.held_out, self.cfg.n_eval, seed=self.cfg.seed) \
            if self.held_out is not None and len(self.held_out) else float("nan")
        return {"step": self.step, "silhouette_iou": iou}

    def fit(self, resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict:
        from utils.training import latest_checkpoint, prepare_run_dir, seed_step, summary_writer, trim_jsonl

        prepare_run_dir(self.out, RUN_ARTEFACTS, resume=resume, overwrite=overwrite, resume_flag="--resume")
        self.out.mkdir(parents=True, exist_ok=True)
        log = self.out / "log.jsonl"
        if resume:
            last = latest_checkpoint(self.out / "ckpts")
            if last is None:
                raise UserError(f"--resume: no checkpoint in {self.out / 'ckpts'}: start without --resume, or pass "
                                "the --out folder of the run to continue")
            self.load(last)
            trim_jsonl(log, self.step)
        if self.step >= self.cfg.steps:
            return {"steps": self.step, "seconds": 0.0, "evals": [], "log": []}
        tb = summary_writer(self.out / "tb", self.step) if self.tensorboard else None
        start = self.evaluate()
        evals, rows, t0 = [start], [], time.perf_counter()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=self.cfg.steps, initial=self.step, desc="get3d", unit="step")
        try:
            while self.step < self.cfg.steps:
                gen = seed_step(self.cfg.seed, self.step)
                real, angles = self.batch(self.step)
                losses = train_step(self.G, self.D, self.opt_g, self.opt_d, real, angles, r1_gamma=self.cfg.r1_gamma,
                                    gamma_mask=self.cfg.gamma_mask, step=self.step, r1_every=self.cfg.r1_every,
                                    generator=gen)
                if not all(math.isfinite(v) for v in losses.values()):
                    raise UserError(f"the losses became {losses} at step {self.step}: training diverged; lower the "
                                    "learning rates (--lr-g, --lr-d) or raise --gamma")
                self.update_ema()
                self.step += 1
                row = {"step": self.step, **losses, "seconds": round(time.perf_counter() - t0, 3)}
                if self.cfg.sample_every and self.step % self.cfg.sample_every == 0 or self.step == self.cfg.steps:
                    row.update(self.evaluate())
                    evals.append({"step": self.step, "silhouette_iou": row["silhouette_iou"]})
                    self.write_samples()
                rows.append(row)
                with open(log, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                if tb is not None:
                    for k, v in row.items():
                        if k != "step" and isinstance(v, float) and math.isfinite(v):
                            tb.add_scalar(f"get3d/{k}", v, self.step)
                if self.step % self.cfg.save_every == 0 or self.step == self.cfg.steps:
                    self.save()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss_d=f"{losses['loss_d']:.3f}", loss_g=f"{losses['loss_g']:.3f}")
        finally:
            if bar is not None:
                bar.close()
            if tb is not None:
                tb.close()
        return {"steps": self.step, "seconds": time.perf_counter() - t0, "evals": evals, "log": rows}


def write_run_metrics(trainer: GET3DTrainer, result: dict, command: str) -> dict:
    """metrics.json of a run: the held-out silhouette IoU at its first and last evaluation, timings, the recipe."""
    from utils.training import write_json

    evals = result["evals"] or [trainer.evaluate()]
    metrics = {"steps": trainer.step, "train_seconds": round(result["seconds"], 1),
               "silhouette_iou_start": evals[0]["silhouette_iou"], "silhouette_iou": evals[-1]["silhouette_iou"],
               "evals": evals, "preset": trainer.preset, "train_config": trainer.cfg.to_dict(),
               "device": trainer.device.type, "command": command}
    write_json(trainer.out / "metrics.json", metrics)
    return metrics

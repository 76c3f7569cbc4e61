"""Training of the radiance fields: random rays of all training pixels, Adam, resumable, on CPU or CUDA.

Every step draws its rays (and its stratified jitter, and the occupancy-grid refresh) from a
generator seeded by (seed, step), so a resumed run repeats the same steps exactly. A checkpoint
(`ckpts/step_*.pt`, read with `torch.load(weights_only=True)`) holds the preset, the full model
and training configs, the scene normalisation, the weights, the optimiser state and Instant-NGP's
adapted ray count.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from utils.data.nerf_synthetic import PosedImages
from utils.errors import UserError
from utils.rendering.cameras import Cameras
from utils.rendering.rays import generate_rays

from .config import NeRFConfig, TrainConfig
from .model import NeRFModel

__all__ = ["Trainer", "SceneNormalization", "fit_scene", "CHECKPOINT_FORMAT", "write_metrics", "plain"]

CHECKPOINT_FORMAT = "cv-generative/nerf-1"
"""The `format` entry of every checkpoint this trainer writes."""


@dataclass(frozen=True)
class SceneNormalization:
    """x_model = scale (x_world - center): the similarity from the data's world to the model's."""

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0

    def cameras(self, cameras: Cameras) -> Cameras:
        """`cameras` (world) as the model sees them."""
        c2w = cameras.camtoworlds.double().clone()
        c2w[:, :3, 3] = (c2w[:, :3, 3] - torch.tensor(self.center, dtype=torch.float64)) * self.scale
        return Cameras(torch.linalg.inv(c2w).to(cameras.viewmats.dtype), cameras.Ks, cameras.width, cameras.height)

    def to_world(self, points: torch.Tensor) -> torch.Tensor:
        """Model-space points (N, 3) back to the data's world units."""
        return points / self.scale + torch.tensor(self.center, dtype=points.dtype, device=points.device)


def fit_scene(config: NeRFConfig, data: PosedImages, unbounded_scene: bool) -> tuple[NeRFConfig, SceneNormalization]:
    """Scene box and normalisation for `data`.

    Object captures (NeRF-synthetic, the built-in scene) keep their world units and the Blender
    box [-1.5, 1.5]^3. Real captures (COLMAP) are centred on the mean camera position and scaled
    so the farthest camera sits at distance 1; instant-ngp and nerfacto then treat the scene as
    unbounded (grid cascades / contraction), vanilla and mip-NeRF bound it by the sparse points.
    """
    if not unbounded_scene:
        return replace(config, unbounded=False, background=tuple(data.background or (1.0, 1.0, 1.0))), \
            SceneNormalization()
    centers = data.cameras.centers.double()
    center = centers.mean(0)
    scale = 1.0 / float((centers - center).norm(dim=-1).max().clamp_min(1e-6))
    norm = SceneNormalization(tuple(center.tolist()), scale)
    bg = tuple(data.background or (0.0, 0.0, 0.0))
    if config.method in ("instant-ngp", "nerfacto"):
        extra = dict(grid_levels=4, cone_angle=1 / 256, alpha_thre=1e-2) if config.method == "instant-ngp" else {}
        return replace(config, aabb=(-1.0, -1.0, -1.0, 1.0, 1.0, 1.0), unbounded=True, near=0.02,
                       far=1000.0, background=bg, **extra), norm
    if data.points is not None and len(data.points) >= 8:
        p = (data.points.double() - center) * scale
        lo, hi = torch.quantile(p, 0.01, dim=0), torch.quantile(p, 0.99, dim=0)
        pad = 0.1 * (hi - lo)
        aabb = tuple((lo - pad).tolist() + (hi + pad).tolist())
    else:
        aabb = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)
    return replace(config, aabb=aabb, unbounded=False, near=0.02, background=bg), norm


def plain(obj: Any) -> Any:
    """Dataclass dicts with tuples as lists, for weights_only checkpoints and JSON."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    from utils.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True))


def _lpips(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, Any]:
    """LPIPS (AlexNet) when its weights are available offline, else null with the reason."""
    try:
        from utils.metrics.metrics_3d import render_lpips

        return {"lpips": float(render_lpips(pred, gt, net="alex").mean())}
    except ImportError as err:
        return {"lpips": None, "lpips_note": f"utils.metrics.lpips is not available ({err})"}
    except UserError as err:
        return {"lpips": None, "lpips_note": str(err)}


def _save_png(path: Path, image: np.ndarray) -> None:
    from utils.io import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp)


def depth_to_image(depth: torch.Tensor, opacity: torch.Tensor | None = None) -> np.ndarray:
    """A depth map (H, W) as an 8-bit grey image, near bright, far dark, empty pixels black."""
    d = depth.float()
    valid = torch.isfinite(d) & ((opacity > 0.5) if opacity is not None else torch.ones_like(d, dtype=torch.bool))
    if not bool(valid.any()):
        return np.zeros(d.shape, np.uint8)
    lo, hi = float(d[valid].min()), float(d[valid].max())
    v = 1 - (d - lo) / max(hi - lo, 1e-8)
    v = torch.where(valid, v.clamp(0, 1) * 0.85 + 0.15, torch.zeros_like(v))
    return (v.numpy() * 255 + 0.5).astype(np.uint8)


class Trainer:
    """Fits a `NeRFModel` to posed images; writes ckpts/, tb/, and on `evaluate(write_dir)` renders."""

    def __init__(self, preset: str, model_config: NeRFConfig, train_config: TrainConfig, train_data: PosedImages,
                 test_data: PosedImages | None, out_dir: str | Path, device: torch.device,
                 normalization: SceneNormalization | None = None, save_every: int | None = None,
                 keep_ckpts: int = 2, tensorboard: bool = True):
        self.preset, self.mcfg, self.cfg = preset, model_config, train_config
        self.norm = normalization or SceneNormalization()
        self.out_dir, self.device = Path(out_dir), device
        self.save_every = save_every or max(1, train_config.steps // 4)
        self.keep_ckpts, self.tensorboard = keep_ckpts, tensorboard
        self.train_data, self.test_data = train_data, test_data
        self.cameras = self.norm.cameras(train_data.cameras).to(device)
        self.test_cameras = self.norm.cameras(test_data.cameras) if test_data is not None and len(test_data) else None
        self.pixels = train_data.images.reshape(-1, 3).to(device)
        if model_config.hash_backend == "auto":  # the concrete backend goes into the checkpoint
            from utils.nn.encodings import tcnn_available

            model_config = replace(model_config, hash_backend="tcnn" if device.type == "cuda" and tcnn_available()
                                   else "torch")
            self.mcfg = model_config
        torch.manual_seed(train_config.seed)
        self.model = NeRFModel(model_config, num_images=len(train_data)).to(device)
        self.model.train_camtoworlds.copy_(self.cameras.camtoworlds.to(self.model.train_camtoworlds))
        if self.model.grid is not None:
            self.model.grid.mark_invisible_cells(self.cameras.camtoworlds, self.cameras.Ks, self.cameras.width,
                                                 self.cameras.height, near=model_config.near)
        self.optimizer = self._make_optimizer()
        self.step = 0
        self.n_rays = train_config.rays

    # -- optimisation -------------------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.cfg
        groups = self.model.param_groups()
        params = [{"params": groups["tables"], "lr": c.lr, "weight_decay": 0.0, "base_lr": c.lr, "kind": "field"},
                  {"params": groups["mlp"], "lr": c.lr, "weight_decay": c.weight_decay, "base_lr": c.lr,
                   "kind": "field"}]
        if groups["pose"]:
            params.append({"params": groups["pose"], "lr": c.camera_lr, "weight_decay": 0.0, "base_lr": c.camera_lr,
                           "kind": "pose"})
        params = [g for g in params if g["params"]]
        return torch.optim.Adam(params, lr=c.lr, betas=c.betas, eps=c.eps)

    def _set_lr(self, step: int) -> float:
        import math

        c = self.cfg
        lr = c.lr * c.lr_factor(step)
        for g in self.optimizer.param_groups:
            if g["kind"] == "pose":
                frac = min(step / max(c.camera_decay_steps, 1), 1.0)
                g["lr"] = math.exp((1 - frac) * math.log(c.camera_lr) + frac * math.log(c.camera_lr_final))
            else:
                g["lr"] = lr
        return lr

    def sample_rays(self, n: int, gen: torch.Generator):
        """n random training pixels: their rays and colours."""
        h, w = self.cameras.height, self.cameras.width
        idx = torch.randint(len(self.pixels), (n,), generator=gen).to(self.device)
        cam = idx // (h * w)
        pix = idx % (h * w)
        uv = torch.stack([(pix % w).float() + 0.5, (pix // w).float() + 0.5], -1)
        return generate_rays(self.cameras, cam, uv), self.pixels[idx]

    def train_step(self, step: int) -> dict[str, float]:
        from utils.metrics.image_metrics import psnr
        from utils.training import seed_step

        gen = seed_step(self.cfg.seed, step)
        self.model.train()
        self.model.update_grid(step, gen)
        rays, target = self.sample_rays(self.n_rays, gen)
        lr = self._set_lr(step)
        out = self.model(rays, stratified=True, generator=gen, step=step, training_views=True)
        terms = self.model.losses(out, target, self.cfg.coarse_loss_mult)
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        self.optimizer.step()
        n_rays = self.n_rays
        samples = int(out.get("num_samples", 0))
        if self.cfg.target_samples > 0:
            self.n_rays = int(min(max(n_rays * self.cfg.target_samples / max(samples, 1), 64), self.cfg.max_rays))
        with torch.no_grad():
            p = float(psnr(out["rgb"].detach().clamp(0, 1).T[None, :, :, None], target.T[None, :, :, None]).mean())
        stats = {k: float(v.detach()) for k, v in terms.items()}
        stats.update(psnr=p, rays=n_rays, samples=samples, lr=lr)
        return stats

    def fit(self, resume: bool = False, progress: bool = True, log_every: int = 10) -> dict[str, Any]:
        from tqdm.auto import tqdm

        from utils.training import checkpoint_path, latest_checkpoint, prune_checkpoints

        ckpt_dir = self.out_dir / "ckpts"
        if resume:
            last = latest_checkpoint(ckpt_dir)
            if last is None:
                raise UserError(f"--resume: no checkpoint in {ckpt_dir}: start without --resume, or pass the --out "
                                "folder of the run to continue")
            self.load_state(last)
        elif latest_checkpoint(ckpt_dir) is not None:
            raise UserError(f"{ckpt_dir} already holds checkpoints: pass --resume to continue that run, or another "
                            "--out for a new one")
        writer = self._writer()
        t0 = time.perf_counter()
        history: list[dict[str, float]] = []
        bar = tqdm(range(self.step, self.cfg.steps), initial=self.step, total=self.cfg.steps, disable=not progress,
                   desc=f"nerf/{self.preset}", dynamic_ncols=True)
        stats: dict[str, float] = {}
        rays_done, t_rays = 0, time.perf_counter()
        for step in bar:
            stats = self.train_step(step)
            self.step = step + 1
            rays_done += int(stats["rays"])
            if step % log_every == 0 or self.step == self.cfg.steps:
                now = time.perf_counter()
                stats["rays_per_s"] = rays_done / max(now - t_rays, 1e-9)
                rays_done, t_rays = 0, now
                history.append({"step": step, "loss": stats["total"], "mse": stats["mse"], "psnr": stats["psnr"],
                                "rays": stats["rays"], "samples": stats["samples"]})
                bar.set_postfix(loss=f"{stats['total']:.4f}", psnr=f"{stats['psnr']:.2f}",
                                rays_s=f"{stats['rays_per_s']:.0f}")
                if writer is not None:
                    for key in ("total", "mse", "psnr", "rays", "samples", "lr", "rays_per_s"):
                        writer.add_scalar(f"train/{key}", stats[key], step)
            if self.step % self.save_every == 0 or self.step == self.cfg.steps:
                self.save_state(checkpoint_path(ckpt_dir, self.step))
                prune_checkpoints(ckpt_dir, self.keep_ckpts)
        if writer is not None:
            writer.close()
        return {"seconds": time.perf_counter() - t0, "history": history, "last": stats}

    def _writer(self):
        if not self.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a soft dependency of the loop
            return None
        return SummaryWriter(str(self.out_dir / "tb"))

    # -- checkpoints -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "preset": self.preset,
            "method": self.mcfg.method,
            "step": self.step,
            "n_rays": self.n_rays,
            "num_images": len(self.train_data),
            "model_config": plain(asdict(self.mcfg)),
            "train_config": plain(asdict(self.cfg)),
            "normalization": {"center": list(self.norm.center), "scale": self.norm.scale},
            "train_cameras": {"Ks": self.cameras.Ks.detach().cpu(), "width": self.cameras.width,
                              "height": self.cameras.height},
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
        }

    def save_state(self, path: Path) -> Path:
        from utils.training import save_checkpoint

        return save_checkpoint(path, self.state_dict())

    def load_state(self, path: Path) -> None:
        from .convert import check_checkpoint

        ckpt = check_checkpoint(path, preset=self.preset)
        if ckpt["model_config"] != plain(asdict(self.mcfg)):
            raise UserError(f"{path} was trained with another model configuration (other --recipe, scene or "
                            "options): resume with the same command line")
        if ckpt.get("train_config", {}).get("seed") != self.cfg.seed:
            raise UserError(f"{path} was trained with --seed {ckpt['train_config'].get('seed')}, not {self.cfg.seed}: "
                            "pass the same seed to resume exactly")
        self.model.load_state_dict(ckpt["model"])
        self.model.to(self.device)
        self.optimizer = self._make_optimizer()
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step, self.n_rays = int(ckpt["step"]), int(ckpt["n_rays"])

    # -- evaluation and export ------------------------------------------------------------------------------
    def render(self, cameras: Cameras, chunk: int = 4096) -> dict[str, torch.Tensor]:
        """Renders of cameras given in the model's (normalised) space."""
        self.model.eval()
        return self.model.render_views(cameras, chunk)

    def evaluate(self, write_dir: Path | None = None, depth_dir: Path | None = None) -> dict[str, Any]:
        """PSNR, SSIM and LPIPS (alex) on the held-out views; writes renders and depth maps when asked."""
        from utils.metrics.metrics_3d import render_psnr, render_ssim

        if self.test_cameras is not None:
            cams, data, split = self.test_cameras, self.test_data, "test"
        else:
            cams, data, split = self.norm.cameras(self.train_data.cameras), self.train_data, "train"
        out = self.render(cams)
        p, g = out["rgb"].permute(0, 3, 1, 2), data.images.permute(0, 3, 1, 2)
        metrics: dict[str, Any] = {
            "psnr": float(render_psnr(p, g).mean()),
            "ssim": float(render_ssim(p, g, padding="valid").mean()),
            "ssim_note": "Gaussian window 11, no padding (as the NeRF / mip-NeRF evaluations)",
            "n_views": len(data), "split": split, "steps": self.step, "preset": self.preset,
            "method": self.mcfg.method, "params": self.model.n_params(),
        }
        metrics.update(_lpips(p, g))
        for i in range(len(data)):
            name = Path(data.names[i]).stem if i < len(data.names) else f"{i:04d}"
            if write_dir is not None:
                _save_png(write_dir / f"{name}.png", (out["rgb"][i].numpy() * 255 + 0.5).astype(np.uint8))
            if depth_dir is not None:
                _save_png(depth_dir / f"{name}.png", depth_to_image(out["depth"][i], out["opacity"][i]))
        return metrics

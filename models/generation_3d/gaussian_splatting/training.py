"""Training loop of 3D Gaussian splatting: the 3DGS recipe, resumable, on CPU or CUDA."""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from utils.data.nerf_synthetic import PosedImages
from utils.errors import UserError
from utils.rendering.cameras import Cameras

from .config import GaussianSplattingConfig, TrainConfig
from .model import GaussianSplatting
from .strategy import Strategy

__all__ = ["Trainer", "scene_scale", "gs_loss", "make_adam", "write_metrics"]

RUN_ARTEFACTS = ("ckpts", "tb", "point_cloud.ply", "test_renders", "metrics.json", "turntable.mp4")
"""What a run writes into its folder (train_3d.py): a fresh run refuses a folder holding any of them."""


def scene_scale(cameras: Cameras) -> float:
    """1.1 x the largest distance of a camera centre from their mean (the 3DGS 'cameras extent')."""
    centers = cameras.centers.double()
    return float(1.1 * (centers - centers.mean(0)).norm(dim=-1).max().clamp(min=1e-6))


def gs_loss(render: torch.Tensor, target: torch.Tensor, lambda_dssim: float,
            fused: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 - lambda) L1 + lambda (1 - SSIM), SSIM zero-padded as in the 3DGS code; also returns L1.
    Images are (B, H, W, 3). `fused` (default: on CPU when numba imports) computes it in one
    compiled pass (`fused_loss.fused_gs_loss`); False runs the PyTorch reference below."""
    from utils.metrics.image_metrics import ssim

    from . import fused_loss

    if fused is None:
        fused = render.device.type == "cpu" and lambda_dssim != 0 and fused_loss.is_available()
    if fused:
        return fused_loss.fused_gs_loss(render, target, lambda_dssim)
    l1 = (render - target).abs().mean()
    if lambda_dssim == 0:
        return l1, l1
    s = ssim(render.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2), padding="zeros").mean()
    return (1 - lambda_dssim) * l1 + lambda_dssim * (1 - s), l1


def make_adam(param: torch.nn.Parameter, lr: float) -> torch.optim.Adam:
    """The Adam of one Gaussian parameter (eps 1e-15, as 3DGS): torch's fused kernel (one pass per
    step instead of about ten tensor ops; same update to float rounding) on CPU and CUDA."""
    fused = param.device.type in ("cpu", "cuda") and param.dtype in (torch.float32, torch.float64)
    return torch.optim.Adam([param], lr=lr, eps=1e-15, fused=fused or None)


PROGRESS_FORMAT = ("{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                   "[{rate_fmt}, {elapsed} elapsed, {remaining} left{postfix}]")
"""The progress bar: steps/s and the time left."""


class Trainer:
    """Fits a `GaussianSplatting` model to posed images.

    Outputs under `out_dir`: ckpts/step_*.pt (resumable), point_cloud.ply, test_renders/*.png,
    turntable.mp4, metrics.json and TensorBoard logs in tb/.
    """

    def __init__(self, model_config: GaussianSplattingConfig, train_config: TrainConfig,
                 strategy: Strategy, train_data: PosedImages, test_data: PosedImages | None,
                 out_dir: str | Path, device: torch.device, save_every: int | None = None, keep_ckpts: int = 2,
                 tensorboard: bool = True):
        self.mcfg, self.cfg, self.strategy = model_config, train_config, strategy
        self.train_data, self.test_data = train_data, test_data
        self.out_dir, self.device = Path(out_dir), device
        self.save_every = save_every or max(1, train_config.steps // 4)
        self.keep_ckpts, self.tensorboard = keep_ckpts, tensorboard
        self.scene_scale = scene_scale(train_data.cameras)
        self.images = train_data.images.to(device)
        self.cameras = train_data.cameras.to(device)
        gen = torch.Generator().manual_seed(train_config.seed)
        if train_data.points is not None and len(train_data.points) > 0:
            self.model = GaussianSplatting.from_points(model_config, train_data.points, train_data.point_colors,
                                                       generator=gen)
        else:
            self.model = GaussianSplatting.random(model_config, generator=gen)
        self.model.to(device)
        self.optimizers = self._make_optimizers()
        strategy.check_sanity(self.model.splats, self.optimizers)
        self.strategy_state = strategy.initialize_state(self.scene_scale)
        self.step = 0
        self.on_step = None
        """Called with the trainer after every step (the live viewer refreshes from it)."""
        self.run_info: dict[str, Any] = {}
        """What the command line chose for the run (e.g. a time-budget plan), saved in checkpoints so
        that a resume continues the same schedule."""

    # -- optimisation ------------------------------------------------------------------------
    def _lrs(self) -> dict[str, float]:
        c = self.cfg
        return {"means": c.means_lr * self.scene_scale, "scales": c.scales_lr, "quats": c.quats_lr,
                "opacities": c.opacities_lr, "sh0": c.sh0_lr, "shN": c.shN_lr}

    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        # one Adam per parameter: densification replaces parameters one at a time
        return {k: make_adam(self.model.splats[k], lr) for k, lr in self._lrs().items()}

    def means_lr_at(self, step: int) -> float:
        """Exponential decay from means_lr to means_lr_final (both x scene scale) over the run."""
        t = min(max(step / max(self.cfg.steps, 1), 0.0), 1.0)
        lr0, lr1 = self.cfg.means_lr, self.cfg.means_lr_final
        return math.exp((1 - t) * math.log(lr0) + t * math.log(lr1)) * self.scene_scale

    def background(self) -> torch.Tensor:
        return torch.tensor(self.cfg.background, device=self.device)

    def train_step(self, step: int) -> dict[str, float]:
        from utils.metrics.image_metrics import psnr
        from utils.training import seed_step

        gen = seed_step(self.cfg.seed, step)
        idx = torch.randint(len(self.images), (self.cfg.batch_size,), generator=gen)
        cams, target = self.cameras[idx.to(self.cameras.viewmats.device)], self.images[idx.to(self.device)]
        bg = self.background()
        sh_degree = min(step // self.cfg.sh_degree_interval, self.mcfg.sh_degree)
        for g in self.optimizers["means"].param_groups:
            g["lr"] = self.means_lr_at(step)
        render, _, info = self.model.render(cams, sh_degree=sh_degree, background=bg)
        self.strategy.step_pre_backward(self.model.splats, self.optimizers, self.strategy_state, step, info)
        loss, l1 = gs_loss(render, target, self.cfg.lambda_dssim)
        loss = loss + self.strategy.regularization(self.model.splats)
        loss.backward()
        for opt in self.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        # after the optimiser step, as gsplat's simple_trainer does
        events = self.strategy.step_post_backward(self.model.splats, self.optimizers, self.strategy_state, step,
                                                  info, lr=self.means_lr_at(step))
        with torch.no_grad():
            train_psnr = float(psnr(render.detach().clamp(0, 1).permute(0, 3, 1, 2), target.permute(0, 3, 1, 2)).mean())
        return {"loss": float(loss.detach()), "l1": float(l1.detach()), "psnr": train_psnr, "n": len(self.model),
                **events}

    def fit(self, resume: bool = False, progress: bool = True, log_every: int = 10,
            overwrite: bool = False) -> dict[str, Any]:
        """Train to `cfg.steps`. A fresh run refuses an output folder that holds another run unless
        `overwrite` (which deletes that run's files); stale temporaries are removed first."""
        from tqdm.auto import tqdm

        from utils.training import checkpoint_path, latest_checkpoint, prepare_run_dir, prune_checkpoints

        ckpt_dir = self.out_dir / "ckpts"
        prepare_run_dir(self.out_dir, RUN_ARTEFACTS, resume=resume, overwrite=overwrite, resume_flag="--resume")
        if resume:
            last = latest_checkpoint(ckpt_dir)
            if last is None:
                raise UserError(f"--resume: no checkpoint in {ckpt_dir}: start without --resume, or pass the --out "
                                "folder of the run to continue")
            self.load_state(last)
        writer = self._writer()
        t0 = time.perf_counter()
        history: list[dict[str, float]] = []
        bar = tqdm(range(self.step, self.cfg.steps), initial=self.step, total=self.cfg.steps, disable=not progress,
                   desc="gaussian_splatting", dynamic_ncols=True, unit="step", bar_format=PROGRESS_FORMAT)
        stats: dict[str, float] = {}
        for step in bar:
            stats = self.train_step(step)
            self.step = step + 1
            if self.on_step is not None:
                self.on_step(self)
            if step % log_every == 0 or self.step == self.cfg.steps:
                history.append({"step": step, "loss": stats["loss"], "psnr": stats["psnr"], "n": stats["n"]})
                bar.set_postfix(loss=f"{stats['loss']:.4f}", psnr=f"{stats['psnr']:.2f}", n=str(stats["n"]))
                if writer is not None:
                    for key in ("loss", "l1", "psnr", "n"):
                        writer.add_scalar(f"train/{key}", stats[key], step)
            if self.step % self.save_every == 0 or self.step == self.cfg.steps:
                self.save_state(checkpoint_path(ckpt_dir, self.step))
                prune_checkpoints(ckpt_dir, self.keep_ckpts, newest=self.step)
        if writer is not None:
            writer.close()
        return {"seconds": time.perf_counter() - t0, "history": history, "last": stats}

    def _writer(self):
        if not self.tensorboard:
            return None
        try:
            from utils.training.runs import summary_writer

            return summary_writer(self.out_dir / "tb", self.step)  # a resumed run hides the old run's later steps
        except ImportError:  # tensorboard is a soft dependency of the loop
            return None

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "splats": {k: v.detach().cpu() for k, v in self.model.splats.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "strategy_state": {k: v.cpu() if torch.is_tensor(v) else v for k, v in self.strategy_state.items()},
            "strategy": type(self.strategy).__name__,
            "model_config": _plain(asdict(self.mcfg)),
            "train_config": _plain(asdict(self.cfg)),
            "run_info": _plain(self.run_info),
        }

    def save_state(self, path: Path) -> Path:
        from utils.training import save_checkpoint

        return save_checkpoint(path, self.state_dict())

    def load_state(self, path: Path) -> None:
        from utils.training import load_checkpoint

        ckpt = load_checkpoint(path, map_location=self.device)
        if ckpt.get("strategy") != type(self.strategy).__name__:
            raise UserError(f"{path} was trained with {ckpt.get('strategy')}, not {type(self.strategy).__name__}: "
                            "pass the same --strategy to resume")
        self.model.load_splats(ckpt["splats"])
        self.model.to(self.device)
        self.optimizers = self._make_optimizers()
        for k, opt in self.optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][k])
        # keys a checkpoint lacks (written before a strategy gained them) start fresh
        saved = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in ckpt["strategy_state"].items()}
        self.strategy_state = {**self.strategy.initialize_state(self.scene_scale), **saved}
        self.step = int(ckpt["step"])

    # -- evaluation and export -------------------------------------------------------------
    @torch.no_grad()
    def render_views(self, cameras: Cameras, chunk: int = 4) -> torch.Tensor:
        """RGB renders (N, H, W, 3) in [0, 1] on the training background."""
        bg = self.background()
        outs = []
        for i in range(0, len(cameras), chunk):
            rgb, _, _ = self.model.render(cameras[i:i + chunk], background=bg)
            outs.append(rgb.clamp(0, 1).cpu())
        return torch.cat(outs)

    def evaluate(self, write_dir: Path | None = None) -> dict[str, Any]:
        """PSNR, SSIM and LPIPS (alex) on the held-out views; writes the renders when asked."""
        from utils.metrics.image_metrics import psnr, ssim

        data = self.test_data if self.test_data is not None and len(self.test_data) else self.train_data
        preds = self.render_views(data.cameras)
        gts = data.images
        p, g = preds.permute(0, 3, 1, 2), gts.permute(0, 3, 1, 2)
        metrics: dict[str, Any] = {
            "psnr": float(psnr(p, g).mean()), "ssim": float(ssim(p, g, padding="zeros").mean()),
            "ssim_note": "Gaussian window 11, zero padding (as the 3DGS evaluation)",
            "n_views": len(data), "split": "test" if data is self.test_data else "train",
            "n_gaussians": len(self.model), "steps": self.step,
        }
        metrics.update(_lpips(p, g))
        if write_dir is not None:
            from utils.io import atomic_path

            for i, img in enumerate(preds):
                name = Path(data.names[i]).stem if i < len(data.names) else f"{i:04d}"
                with atomic_path(write_dir / f"{name}.png") as tmp:
                    Image.fromarray((img.numpy() * 255 + 0.5).astype(np.uint8)).save(tmp)
        return metrics


def _lpips(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, Any]:
    """LPIPS (AlexNet) when its weights are available offline, else null with the reason."""
    try:
        from utils.metrics.lpips import LPIPS

        net = LPIPS.from_pretrained("alex")
        with torch.no_grad():
            value = net(pred * 2 - 1, gt * 2 - 1)
        return {"lpips": float(torch.as_tensor(value).mean())}
    except ImportError as err:
        return {"lpips": None, "lpips_note": f"utils.metrics.lpips is not available ({err})"}
    except UserError as err:
        return {"lpips": None, "lpips_note": str(err)}


def _plain(obj: Any) -> Any:
    """Dataclass dicts with tuples turned into lists, for weights_only checkpoints and JSON."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    from utils.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True))


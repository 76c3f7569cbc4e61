"""Voxel shapes from a few views of an object: `VoxelVAEGANPipeline`.

    pipe = VoxelVAEGANPipeline.from_pretrained("outputs/voxel_vae_gan/primitives/checkpoints/latest")
    out = pipe(images=["a.jpg", "b.jpg"], poses=["a.json", "b.json"], threshold=0.4)
    out.save("shape.binvox"); out.save("shape.obj"); out.save("shape/")   # grid, mesh, every part

`source` is a training epoch folder (checkpoints/epoch_N or latest), its model.safetensors or
training_state.pt, or a run's output folder; `preset="tiny"` (or any preset without `source`)
builds random weights. `Output3D.voxels` holds the occupancy probabilities; the renders, the
.binvox grid and the marching-cubes mesh (.obj/.ply, absent when nothing passes the threshold)
show them thresholded. With `seed=None` the code is the fused mean (a deterministic
reconstruction); with a seed it is a draw from N(mu, sigma), so the seed changes the shape.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from models.generation_3d.voxel_vae_gan.config import VoxelVAEGANConfig, get_config
from models.generation_3d.voxel_vae_gan.model import VoxelVAEGAN
from models.generation_3d.voxel_vae_gan.spec import SPEC
from utils.errors import UserError
from utils.outputs import Output3D

__all__ = ["VoxelVAEGANPipeline", "voxel_mesh", "load_weights"]


def voxel_mesh(probs, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Marching-cubes mesh of an occupancy grid over [-1, 1]^3 at `threshold` (closed at the border)."""
    from utils.visualization.mesh import marching_cubes

    grid = np.asarray(probs, dtype=np.float32)
    n = grid.shape[0]
    h = 1.0 / n  # half a voxel: the grid's samples sit at voxel centres
    padded = np.pad(grid, 1, constant_values=0.0)
    return marching_cubes(padded, level=threshold, bounds=((-1 - h,) * 3, (1 + h,) * 3))


def load_weights(source: str | Path) -> tuple[VoxelVAEGAN, dict[str, Any]]:
    """A trained model and its info (config.json of the epoch folder, the training mean shape) from `source`."""
    from safetensors.torch import load_file

    from models.generation_3d.voxel_vae_gan.training import CONFIG_FILE, STATE_FILE, WEIGHTS_FILE
    from utils.weights.native import config_from_json

    p = Path(source)
    candidates = [p, p / WEIGHTS_FILE, p / "latest" / WEIGHTS_FILE, p / "checkpoints" / "latest" / WEIGHTS_FILE]
    found = next((c for c in candidates if c.is_file() and c.suffix == ".safetensors"), None)
    info: dict[str, Any] = {}
    if found is not None:
        try:
            from safetensors import safe_open

            with safe_open(str(found), framework="pt") as f:
                meta = f.metadata() or {}
            state = load_file(str(found))
        except Exception as err:  # noqa: BLE001 - any failure to read is the same user-facing problem
            raise UserError(f"cannot read {found} ({' '.join(str(err).split())[:100]}): it is corrupt") from None
        if "config" not in meta:
            raise UserError(f"{found} has no voxel_vae_gan config in its metadata: it was not written by train_3d.py")
        cfg = config_from_json(VoxelVAEGANConfig, meta["config"])
        mean_shape = state.pop("mean_shape", None)
        if (found.parent / CONFIG_FILE).is_file():
            info = json.loads((found.parent / CONFIG_FILE).read_text())
    else:
        from models.generation_3d.voxel_vae_gan.training import read_training_state

        if not p.exists():
            raise UserError(f"--model_path {p} not found: give an epoch folder (<output_dir>/checkpoints/epoch_N or "
                            "latest) or its model.safetensors")
        s = read_training_state(p)
        cfg = config_from_json(VoxelVAEGANConfig, s["model_config"])
        state = {**{f"encoder.{k}": v for k, v in s["encoder"].items()},
                 **{f"generator.{k}": v for k, v in s["generator"].items()},
                 **{f"discriminator.{k}": v for k, v in s["discriminator"].items()}}
        mean_shape = s.get("mean_shape")
        info = {"train": json.loads(s["train_config"]), "baseline_threshold": s.get("baseline_threshold"),
                "epoch": s.get("epoch")}
        found = p / STATE_FILE if p.is_dir() else p
    model = VoxelVAEGAN(cfg)
    from utils.weights.keys import check_finite

    check_finite(state, "voxel_vae_gan checkpoint")  # NaN/Inf refused, naming the tensor
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        from utils.errors import ConversionError

        raise ConversionError(f"{found} does not match voxel_vae_gan {cfg.cube_len}^3: missing {sorted(missing)[:4]}, "
                              f"unexpected {sorted(unexpected)[:4]}")
    info["mean_shape"] = mean_shape
    info["source"] = str(found)
    return model, info


def _as_views(images, size: int, masks=None) -> torch.Tensor:
    from PIL import Image

    from utils.data.co3d.dataset import load_view

    if torch.is_tensor(images):
        x = images.float()
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] != 3:
            raise UserError(f"images as a tensor must be (V, 3, H, W) in [0, 1], got {tuple(images.shape)}")
        return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                               align_corners=False).clamp(0, 1)
    if not isinstance(images, (list, tuple)):
        images = [images]
    if not images:
        raise UserError("give at least one view (images=[...])")
    masks = list(masks) if masks is not None else [None] * len(images)
    if len(masks) != len(images):
        raise UserError(f"{len(masks)} masks for {len(images)} images: give one mask per image, or none")
    views = []
    for im, mask in zip(images, masks):
        if isinstance(im, (str, Path)) and not Path(im).is_file():
            raise UserError(f"image {im} not found")
        if not isinstance(im, (str, Path, Image.Image)):
            raise UserError(f"a view must be an image path, a PIL image or a tensor, got {type(im).__name__}")
        arr = load_view(im, mask, size)
        views.append(torch.from_numpy(arr).permute(2, 0, 1).float() / 255)
    return torch.stack(views)


def _as_poses(poses, n: int) -> torch.Tensor:
    from utils.data.co3d.cameras import POSE_DIM, pose_vector
    from utils.data.co3d.layout import read_pose

    if torch.is_tensor(poses):
        if poses.shape != (n, POSE_DIM):
            raise UserError(f"poses as a tensor must be (views, {POSE_DIM}) pose vectors, got {tuple(poses.shape)}")
        return poses.float()
    poses = list(poses)
    if len(poses) != n:
        raise UserError(f"{len(poses)} poses for {n} views: give one pose per view")
    out = []
    for p in poses:
        rec = read_pose(p) if isinstance(p, (str, Path)) else p
        if not isinstance(rec, dict) or "R" not in rec or "T" not in rec:
            raise UserError("a pose must be a CO3D pose .json path or a dict with R (3x3) and T (3)")
        out.append(pose_vector(torch.as_tensor(rec["R"], dtype=torch.float32),
                               torch.as_tensor(rec["T"], dtype=torch.float32)))
    return torch.stack(out)


class VoxelVAEGANPipeline:
    """Views (and their poses) of one object -> an occupancy grid, its renders and its mesh."""

    def __init__(self, model: VoxelVAEGAN, info: dict[str, Any] | None = None, device: torch.device | None = None):
        self.model = model.eval()
        self.cfg = model.cfg
        self.info = info or {}
        self.device = device or torch.device("cpu")
        self.combine_type = (self.info.get("train") or {}).get("combine_type", "mean")
        self.num_views = (self.info.get("train") or {}).get("num_views")

    @classmethod
    def from_pretrained(cls, source: str | Path | None = None, preset: str | None = None, device=None,
                        dtype: torch.dtype | None = None) -> "VoxelVAEGANPipeline":
        from utils.torch_utils import resolve_device

        dev = resolve_device(device)
        if source is None:
            preset = SPEC.check_preset(preset)
            from utils.torch_utils import local_seed

            with local_seed(0):  # random weights that are the same on every load, from a generator of their own
                model = VoxelVAEGAN(get_config(preset))
            info: dict[str, Any] = {}
        else:
            model, info = load_weights(source)
        model = model.to(dev, dtype or torch.float32)
        return cls(model, info, dev)

    @torch.no_grad()
    def __call__(self, images=None, poses=None, masks=None, threshold: float | None = None, seed: int | None = None,
                 combine_type: str | None = None, render_size: int | None = None,
                 azimuths: Sequence[float] = (45.0, 135.0, 225.0, 315.0)) -> Output3D:
        from utils.data.binvox import write_binvox
        from utils.visualization.mesh import write_mesh
        from utils.visualization.voxels import render_voxels

        threshold = SPEC.default(SPEC.default_preset, "threshold") if threshold is None else threshold
        render_size = SPEC.default(SPEC.default_preset, "render_size") if render_size is None else render_size
        if not 0 < threshold < 1:
            raise UserError(f"threshold must be in (0, 1), got {threshold}")
        if images is None:
            raise UserError("give the object's views: images=[path or PIL image, ...]")
        views = _as_views(images, self.cfg.image_size, masks)
        pose_vec = None
        if self.cfg.use_pose:
            if poses is None:
                raise UserError("this model was trained with use_pose: give one CO3D pose .json per view (--poses)")
            pose_vec = _as_poses(poses, len(views))[None].to(self.device)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        dtype = next(self.model.parameters()).dtype
        probs = self.model.reconstruct(views[None].to(self.device, dtype), pose_vec,
                                       combine_type or self.combine_type, generator=gen)[0].float().cpu()
        occupied = (probs > threshold).numpy()
        renders = [render_voxels(probs, render_size, azimuth=a, threshold=threshold) for a in azimuths]
        step = 2.0 / probs.shape[0]
        centres = (np.argwhere(occupied) + 0.5) * step - 1.0

        def save_npy(path: Path) -> None:
            with open(path, "wb") as f:
                np.save(f, probs.numpy())

        writers = {".binvox": lambda p: write_binvox(p, occupied, translate=(-1.0, -1.0, -1.0), scale=2.0),
                   ".npy": save_npy}
        if occupied.any():
            verts, faces = voxel_mesh(probs.numpy(), threshold)
            writers[".obj"] = lambda p: write_mesh(p, verts, faces)
            writers[".ply"] = lambda p: write_mesh(p, verts, faces)
        # voxels: the occupancy probabilities (threshold them for the grid the renders, mesh and .binvox show)
        return Output3D(renders=renders, points=centres.astype(np.float32), voxels=probs.numpy(), writers=writers)

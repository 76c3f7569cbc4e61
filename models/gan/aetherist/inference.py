"""The Aetherist seed's inference API: `AetheristInferencePipeline` and `BatchInferencePipeline`.

    pipeline = AetheristInferencePipeline("path/to/checkpoint", device="cpu")   # or preset="tiny"
    result = pipeline.generate(num_samples=4, seed=42)                           # dict of tensors
    pipeline.save_images(result["images"], "output/")
    pose = create_camera_pose(elevation=30, azimuth=45, radius=2.0)
    result = pipeline.generate(num_samples=1, camera_poses=pose.unsqueeze(0))
    frames = pipeline.interpolate(latent1, latent2, steps=20, interpolation_method="slerp")

A thin layer over `AetheristPipeline` (which the zoo's facade and CLIs use): results are dicts as the seed
documents them ("images" in [-1, 1], "latent_codes", "camera_poses" as 25-value labels).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from models.gan.aetherist.pipeline import AetheristPipeline
from utils.errors import UserError

__all__ = ["AetheristInferencePipeline", "BatchInferencePipeline", "slerp"]


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation between latents a and b (D,) at fractions t (T,) -> (T, D); linear where they
    are (anti)parallel."""
    a_n, b_n = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    omega = torch.arccos((a_n * b_n).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    t = t[:, None]
    if omega.abs() < 1e-4:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


class AetheristInferencePipeline:
    """Load a checkpoint (a native .safetensors, an EG3D .pkl, a folder) or a preset, and generate."""

    def __init__(self, model_path: str | Path | None = None, device: str = "cpu", half_precision: bool = False,
                 preset: str | None = None):
        if half_precision and not str(device).startswith("cuda"):
            raise UserError("half_precision needs a CUDA device: drop it on the CPU")
        dtype = "fp16" if half_precision else "fp32"
        if model_path is None and preset is None:
            raise UserError("give a model_path (a checkpoint) or a preset (e.g. 'tiny' for random weights)")
        self.pipeline = AetheristPipeline.from_pretrained(model_path, preset=preset, device=device, dtype=dtype)
        self.config = self.pipeline.config
        self.device = self.pipeline.device

    def _resize(self, images: Tensor, resolution: int | None) -> Tensor:
        if resolution is None or resolution == images.shape[-1]:
            return images
        if not 8 <= resolution <= 1024:
            raise UserError(f"resolution must lie in 8..1024, got {resolution}")
        return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False,
                             antialias=True).clamp(-1, 1)

    def generate(self, num_samples: int = 1, seed: int | None = None, resolution: int | None = None,
                 latent_codes: Tensor | None = None, camera_poses: Tensor | None = None,
                 truncation: float | None = None, elevation: float | None = None,
                 azimuth: float | None = None, radius: float | None = None) -> dict[str, Any]:
        """{'images' (B, 3, R, R) in [-1, 1], 'latent_codes' (B, latent_dim), 'camera_poses' (B, 25)}."""
        if latent_codes is not None:
            latent_codes = torch.as_tensor(latent_codes, dtype=torch.float32)
            if latent_codes.ndim == 1:
                latent_codes = latent_codes[None]
            num_samples = len(latent_codes)
        out = self.pipeline(num_images=num_samples, seed=seed, latents=latent_codes, camera_poses=camera_poses,
                            truncation=truncation, elevation=elevation, azimuth=azimuth, radius=radius)
        images = self._resize(out.pixels * 2 - 1, resolution)
        return {"images": images, "latent_codes": out.latents, "camera_poses": out.labels}

    def interpolate(self, start_latent: Tensor, end_latent: Tensor, steps: int = 10,
                    interpolation_method: str = "linear", camera_poses: Tensor | None = None,
                    seed: int | None = 0, resolution: int | None = None) -> dict[str, Any]:
        """`steps` images along the path from start_latent to end_latent ('linear' or 'slerp')."""
        if steps < 2:
            raise UserError(f"an interpolation needs at least 2 steps, got {steps}")
        a = torch.as_tensor(start_latent, dtype=torch.float32).reshape(-1)
        b = torch.as_tensor(end_latent, dtype=torch.float32).reshape(-1)
        if a.shape != b.shape or a.numel() != self.config.latent_dim:
            raise UserError(f"start and end latents must both hold {self.config.latent_dim} values, got {a.numel()} "
                            f"and {b.numel()}")
        t = torch.linspace(0, 1, steps)
        if interpolation_method == "linear":
            path = (1 - t[:, None]) * a + t[:, None] * b
        elif interpolation_method == "slerp":
            path = slerp(a, b, t)
        else:
            raise UserError(f"interpolation_method must be 'linear' or 'slerp', got {interpolation_method!r}")
        result = self.generate(latent_codes=path, camera_poses=camera_poses, seed=seed, resolution=resolution)
        result["t"] = t
        return result

    def save_images(self, images: Tensor, output_dir: str | Path, prefix: str = "generated") -> list[Path]:
        """Each image (B, 3, H, W in [-1, 1]) as output_dir/{prefix}_{i:04d}.png; returns the paths."""
        from utils.outputs import ImageOutput

        images = torch.as_tensor(images)
        if images.ndim != 4 or images.shape[1] != 3:
            raise UserError(f"save_images takes images of shape (batch, 3, height, width), got {tuple(images.shape)}")
        out_dir = Path(output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        pil = ImageOutput.from_tensor(images.float().cpu().clamp(-1, 1)).images
        paths = []
        for i, img in enumerate(pil):
            path = out_dir / f"{prefix}_{i:04d}.png"
            ImageOutput([img]).save(path)
            paths.append(path)
        return paths

    @staticmethod
    def save_latents(latent_codes: Tensor, path: str | Path) -> Path:
        """Latent codes as a .safetensors file (for reproducible generations)."""
        from safetensors.torch import save_file

        from utils.io import atomic_path

        path = Path(path)
        if path.suffix != ".safetensors":
            raise UserError(f"latent codes are saved as .safetensors, got {path.name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file({"latent_codes": torch.as_tensor(latent_codes).float().contiguous().cpu()}, str(tmp))
        return path

    def load_latents(self, path: str | Path) -> Tensor:
        from utils.weights import load_state_dict

        tensors = load_state_dict(Path(path))
        if "latent_codes" not in tensors:
            raise UserError(f"{Path(path).name} holds no 'latent_codes' tensor: save them with save_latents")
        z = tensors["latent_codes"].float()
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise UserError(f"{Path(path).name} holds latents of shape {tuple(z.shape)}; this model takes "
                            f"(batch, {self.config.latent_dim})")
        return z

    def turntable(self, seed: int | None = 0, num_frames: int = 36, elevation: float = 0.0, **kw: Any):
        return self.pipeline.turntable(seed=seed, num_frames=num_frames, elevation=elevation, **kw)

    def extract_mesh(self, path: str | Path, seed: int | None = 0, resolution: int = 64,
                     level: float | None = None) -> Path:
        (out,) = self.pipeline.mesh(seed=seed, resolution=resolution, level=level).save(path)
        return out


class BatchInferencePipeline:
    """Many images in batches of at most `max_batch_size`, written to a folder as they come."""

    def __init__(self, pipeline: AetheristInferencePipeline, max_batch_size: int = 8):
        if max_batch_size < 1:
            raise UserError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self.pipeline, self.max_batch_size = pipeline, max_batch_size

    def generate_large_batch(self, num_samples: int, output_dir: str | Path, seed: int = 0,
                             prefix: str = "generated") -> dict[str, Any]:
        """{'paths': the PNGs, 'latent_codes': (num_samples, latent_dim)}; batch i renders with seed + i, and the
        latents of the whole call come from `seed`, so the set is reproducible."""
        if num_samples < 1:
            raise UserError("the number of samples must be at least 1")
        from utils.torch_utils import make_generator, randn

        z = randn((num_samples, self.pipeline.config.latent_dim), make_generator(seed))
        out_dir = Path(output_dir)
        paths: list[Path] = []
        for b, i in enumerate(range(0, num_samples, self.max_batch_size)):
            result = self.pipeline.generate(latent_codes=z[i:i + self.max_batch_size], seed=seed + b)
            written = self.pipeline.save_images(result["images"], out_dir, prefix=f"{prefix}_b{b:04d}")
            paths += written
        self.pipeline.save_latents(z, out_dir / f"{prefix}_latents.safetensors")
        return {"paths": paths, "latent_codes": z, "num_batches": math.ceil(num_samples / self.max_batch_size)}

"""Render a splat scene: `GaussianSplattingPipeline(ply=...) -> Output3D` (orbit renders + .ply)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from utils.outputs import Output3D
from utils.errors import UserError
from utils.rendering.cameras import Cameras, orbit_cameras
from utils.rendering.sh import sh_to_rgb
from utils.torch_utils import make_generator, resolve_device
from utils.visualization.ply import write_splat_ply

from .config import GaussianSplattingConfig, get_config
from .convert import load_splats
from .model import GaussianSplatting

__all__ = ["GaussianSplattingPipeline"]


class GaussianSplattingPipeline:
    """Loads splats (a 3DGS .ply or checkpoint) and renders orbit views of them.

    `preset='tiny'` with no source gives a few random Gaussians (tests). Rendering uses gsplat
    on CUDA and the compiled (numba) rasterizer on CPU (`config.raster.backend` picks another).
    """

    def __init__(self, model: GaussianSplatting | None, config: GaussianSplattingConfig, device: torch.device):
        self.model, self.config, self.device = model, config, device

    @classmethod
    def from_pretrained(cls, source: str | Path | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | None = None
                        ) -> "GaussianSplattingPipeline":
        config = get_config(preset)
        dev = resolve_device(device)
        model = None
        if source is not None:
            model = cls._load(source, config, dev)
        elif preset == "tiny":
            model = GaussianSplatting.random(config, generator=make_generator(0), n=256).to(dev)
            # visible, opaque-ish blobs so a tiny render is not blank
            with torch.no_grad():
                model.splats["opacities"].fill_(2.0)
                model.splats["scales"].fill_(math.log(0.08))
        return cls(model, config, dev)

    @staticmethod
    def _load(source: str | Path, config: GaussianSplattingConfig, device: torch.device) -> GaussianSplatting:
        splats = load_splats(source)
        degree = int(math.isqrt(splats["shN"].shape[1] + 1)) - 1
        if degree != config.sh_degree:
            from dataclasses import replace

            config = replace(config, sh_degree=degree)
        model = GaussianSplatting(config)
        model.load_splats(splats)
        return model.to(device)

    def __call__(self, ply: str | Path | None = None, seed: int | None = None, n_views: int = 60,
                 width: int = 512, height: int | None = None, fov: float = 40.0, elevation: float = 25.0,
                 radius: float | None = None, up: tuple[float, float, float] = (0.0, 0.0, 1.0),
                 center: tuple[float, float, float] | None = None,
                 background: tuple[float, float, float] = (1.0, 1.0, 1.0), cameras: Cameras | None = None,
                 fps: float = 24.0) -> Output3D:
        """Render `n_views` orbit views (or `cameras`) of the splats in `ply` (or the loaded ones).

        The orbit circles the median of the Gaussians at `radius` (default: from their spread and
        the field of view), `elevation` degrees above the plane normal to `up`.
        """
        model = self._load(ply, self.config, self.device) if ply is not None else self.model
        if model is None or len(model) == 0:
            raise UserError("no splats to render: pass ply='scene.ply' (a 3DGS .ply or checkpoint), or use "
                            "preset='tiny' for random Gaussians")
        height = height or width
        if cameras is None:
            c, spread = model.scene_center_radius()
            target = tuple(c.tolist()) if center is None else center
            fov_r = math.radians(fov)
            dist = radius if radius is not None else 1.15 * spread / math.sin(0.5 * fov_r)
            cameras = orbit_cameras(n_views, dist, width, height, fov_x=fov_r, elevation=math.radians(elevation),
                                    target=target, up=up)
        bg = torch.tensor(background, dtype=torch.float32)
        frames = []
        with torch.no_grad():
            for i in range(0, len(cameras), 4):
                rgb, _, _ = model.render(cameras[i:i + 4], background=bg)
                frames.append(rgb.clamp(0, 1).cpu())
        rgb = torch.cat(frames).numpy()
        from PIL import Image

        renders = [Image.fromarray((f * 255 + 0.5).astype(np.uint8)) for f in rgb]
        splats = {k: v.detach().cpu() for k, v in model.splats.items()}
        points = splats["means"].numpy()
        colors = sh_to_rgb(splats["sh0"][:, 0]).clamp(0, 1).numpy()
        return Output3D(renders=renders, points=points, colors=colors, fps=fps,
                        writers={".ply": lambda path: write_splat_ply(path, splats)},
                        cameras=cameras)

"""Render a trained radiance field: `NeRFPipeline.from_pretrained(ckpt)(camera_path="orbit") -> Output3D`.

The output holds the rendered views (and their cameras), and writes a mesh by marching cubes as
`.ply` or `.obj` (`out.save("mesh.ply")`). `render(cameras)` gives colour, depth and opacity
tensors; `mesh()` and `point_cloud()` the exports, in the data's world units.

Camera paths: "orbit" (a circle fitted to the training cameras: their mean distance, elevation
and up; or `radius` / `elevation` / `center` given), "train" (the training views), or a JSON
file: nerfstudio's camera path (`camera_path: [{camera_to_world: 16 numbers, fov: degrees}]`)
or a NeRF-synthetic transforms file (`frames: [{transform_matrix}]`, `camera_angle_x`), both with
OpenGL camera axes.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from utils.errors import UserError
from utils.outputs import Output3D
from utils.rendering.cameras import Cameras, intrinsics_from_fov, opengl_to_opencv, orbit_cameras
from utils.torch_utils import resolve_device

from .config import get_config
from .model import NeRFModel
from .training import SceneNormalization

__all__ = ["NeRFPipeline", "load_camera_path"]


def load_camera_path(path: str | Path, width: int | None = None, height: int | None = None) -> Cameras:
    """Cameras (world units, OpenCV axes) of a nerfstudio camera-path or NeRF-synthetic transforms JSON."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"camera path {p} not found: use orbit, train, or a camera-path .json file")
    try:
        meta = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"camera path {p} is not valid JSON ({err.msg} at line {err.lineno})") from None
    if isinstance(meta, dict) and "camera_path" in meta:
        frames = meta["camera_path"]
        w = width or int(meta.get("render_width", 256))
        h = height or int(meta.get("render_height", w))
        c2w = [np.asarray(f["camera_to_world"], dtype=np.float64).reshape(4, 4) for f in frames]
        fovs = [math.radians(float(f.get("fov", 50.0))) for f in frames]  # vertical, as nerfstudio writes it
        Ks = [intrinsics_from_fov(2 * math.atan(math.tan(fy / 2) * w / h), w, h, fov_y=fy) for fy in fovs]
    elif isinstance(meta, dict) and "frames" in meta:
        frames = meta["frames"]
        w = width or int(meta.get("w", 256))
        h = height or int(meta.get("h", w))
        c2w = [np.asarray(f["transform_matrix"], dtype=np.float64) for f in frames]
        fov_x = float(meta.get("camera_angle_x", math.radians(40)))
        Ks = [intrinsics_from_fov(fov_x, w, h)] * len(frames)
    else:
        raise UserError(f"{p} is neither a nerfstudio camera path (camera_path) nor a transforms file (frames)")
    if not c2w:
        raise UserError(f"{p} lists no cameras")
    cv = opengl_to_opencv(torch.from_numpy(np.stack(c2w)))
    return Cameras(torch.linalg.inv(cv).float(), torch.stack(Ks).float(), w, h)


class NeRFPipeline:
    """A trained field (or, with preset 'tiny' and no checkpoint, a random one) and its renderers."""

    def __init__(self, model: NeRFModel, preset: str, normalization: SceneNormalization, device: torch.device,
                 training_cameras: Cameras | None = None):
        self.model, self.preset, self.normalization, self.device = model, preset, normalization, device
        self.training_cameras = training_cameras
        """The training views in model space (None for a random field)."""

    @classmethod
    def from_pretrained(cls, source: str | Path | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | None = None) -> "NeRFPipeline":
        """`source`: a checkpoint of `train_3d.py --model nerf` (file or --out folder). No NeRF
        weights are published, so without one only `preset='tiny'` (random weights) loads."""
        dev = resolve_device(device)
        if source is not None:
            from .convert import load_model

            model, found, norm, cams = load_model(source, preset, dev)
            return cls(model, found, norm, dev, cams)
        if preset != "tiny":
            raise UserError("NeRF has no published weights: pass the checkpoint of a train_3d.py --model nerf run "
                            "(--ckpt outputs/nerf/<scene>/ckpts/step_*.pt), or preset 'tiny' for a random field")
        torch.manual_seed(0)
        model = NeRFModel(get_config("tiny")).to(dev).eval()
        with torch.no_grad():  # a visible random field: hash features far from their tiny initial range
            model.field.encoding.table.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(0))
            model.field.density_mlp.net[-1].bias[0] = 1.0
        return cls(model, "tiny", SceneNormalization(), dev)

    # -- cameras ------------------------------------------------------------------------------------------
    def train_cameras(self, width: int | None = None, height: int | None = None) -> Cameras | None:
        """The training views as the model saw them, at `width` x `height` (None for a random field)."""
        cams = self.training_cameras
        if cams is None:
            return None
        if width is None:
            return cams
        height = height or round(width * cams.height / cams.width)
        Ks = cams.Ks.clone()
        Ks[:, 0] *= width / cams.width
        Ks[:, 1] *= height / cams.height
        return Cameras(cams.viewmats, Ks, width, height)

    def camera_path(self, path: str = "orbit", n_views: int = 60, width: int = 256, height: int | None = None,
                    fov: float = 40.0, elevation: float | None = None, radius: float | None = None,
                    center: tuple[float, float, float] | None = None,
                    up: tuple[float, float, float] | None = None) -> Cameras:
        """Cameras in the model's space for a named path or a camera-path file."""
        height = height or width
        if path == "orbit":
            train = self.train_cameras(width, height)
            if train is not None and center is None and radius is None and elevation is None and up is None:
                from utils.visualization.turntable import orbit_from_cameras

                cams = orbit_from_cameras(train, n_views, width, height)
                K = intrinsics_from_fov(math.radians(fov), width, height).expand(n_views, 3, 3).clone()
                return Cameras(cams.viewmats, K, width, height)
            aabb = self.model.aabb.detach().cpu()
            mid = (aabb[:3] + aabb[3:]) / 2
            target = tuple(mid.tolist()) if center is None else tuple(
                ((torch.tensor(center) - torch.tensor(self.normalization.center)) * self.normalization.scale).tolist())
            spread = float((aabb[3:] - aabb[:3]).norm()) / 2
            dist = radius * self.normalization.scale if radius is not None else 1.2 * spread / math.sin(math.radians(fov) / 2)
            return orbit_cameras(n_views, dist, width, height, fov_x=math.radians(fov),
                                 elevation=math.radians(25.0 if elevation is None else elevation), target=target,
                                 up=up or (0.0, 0.0, 1.0))
        if path == "train":
            train = self.train_cameras(width, height)
            if train is None:
                raise UserError("camera path 'train' needs a trained checkpoint: use orbit for a random field")
            return train
        return self.normalization.cameras(load_camera_path(path, width, height))

    # -- rendering and exports ---------------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, cameras: Cameras, background: tuple[float, float, float] | None = None,
               chunk: int = 8192) -> dict[str, torch.Tensor]:
        """rgb (C, H, W, 3), depth (C, H, W) in world units, opacity (C, H, W) of cameras in model space."""
        bg = None if background is None else torch.tensor(background, dtype=torch.float32, device=self.device)
        out = self.model.render_views(cameras, chunk, background=bg)
        out["depth"] = out["depth"] / self.normalization.scale
        return out

    def mesh(self, resolution: int = 128, threshold: float = 10.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(vertices, faces, colours) in world units, by marching cubes of the density."""
        from .export import extract_mesh

        verts, faces, colors = extract_mesh(self.model, resolution, threshold)
        return self.normalization.to_world(torch.from_numpy(verts)).numpy(), faces, colors

    def point_cloud(self, cameras: Cameras | None = None, num_points: int = 100_000, min_opacity: float = 0.9,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(points, colours) in world units: the pixels of `cameras` (default: the training views)
        at least `min_opacity` opaque, at their expected depth."""
        from .export import extract_point_cloud

        cams = cameras if cameras is not None else (self.train_cameras(128) or self.camera_path("orbit", 16, 128))
        pts, cols = extract_point_cloud(self.model, cams, num_points, min_opacity,
                                        generator=torch.Generator().manual_seed(seed))
        return self.normalization.to_world(torch.from_numpy(pts)).numpy(), cols

    def __call__(self, camera_path: str = "orbit", n_views: int = 60, width: int = 256, height: int | None = None,
                 fov: float = 40.0, elevation: float | None = None, radius: float | None = None,
                 center: tuple[float, float, float] | None = None, up: tuple[float, float, float] | None = None,
                 background: tuple[float, float, float] | None = None, fps: float = 24.0,
                 mesh_resolution: int = 128, mesh_threshold: float = 10.0, cameras: Cameras | None = None,
                 seed: int | None = None) -> Output3D:
        """Render a camera path (or `cameras`, in model space). The output's `.save('x.ply'|'x.obj')`
        writes the marching-cubes mesh; rendering is deterministic (`seed` changes nothing)."""
        from utils.visualization.mesh import write_mesh

        if n_views < 1 or width < 8:
            raise UserError("n_views must be at least 1 and width at least 8")
        cams = cameras if cameras is not None else self.camera_path(camera_path, n_views, width, height, fov,
                                                                    elevation, radius, center, up)
        out = self.render(cams, background)
        renders = [Image.fromarray((f.numpy() * 255 + 0.5).astype(np.uint8)) for f in out["rgb"]]
        cache: dict[str, Any] = {}

        def mesh_writer(path: Path) -> None:
            if "mesh" not in cache:
                cache["mesh"] = self.mesh(mesh_resolution, mesh_threshold)
            verts, faces, colors = cache["mesh"]
            write_mesh(path, verts, faces, colors)

        # the writers get a temporary path with the real suffix (utils.io.atomic_path)
        return Output3D(renders=renders, fps=fps, cameras=cams,
                        writers={".ply": mesh_writer, ".obj": mesh_writer})

"""Reader of the NeRF-synthetic (Blender) layout, and the posed-image set every 3D trainer uses.

    scene/transforms_train.json   {"camera_angle_x": fov, "frames": [{"file_path": "./train/r_0",
    scene/transforms_test.json                                       "transform_matrix": 4x4}, ...]}
    scene/train/r_0.png ...       RGBA images

`transform_matrix` is camera-to-world with OpenGL axes (y up, looking down -z); it is converted
to the OpenCV world-to-camera convention of `utils.rendering.cameras`. Transparent pixels are
composited on a background colour (white by default, as in the 3DGS and NeRF evaluations).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from utils.errors import UserError, parsing
from utils.rendering.cameras import Cameras, opengl_to_opencv

__all__ = ["PosedImages", "load_nerf_synthetic", "is_nerf_synthetic"]


@dataclass
class PosedImages:
    """Images with their cameras, one split of a scene."""

    images: Tensor
    """RGB in [0, 1], (N, H, W, 3) float32."""
    cameras: Cameras
    """The N cameras (OpenCV axes, world-to-camera)."""
    names: list[str] = field(default_factory=list)
    """Image file names, for writing renders next to them."""
    points: Tensor | None = None
    """An optional sparse point cloud (P, 3) for initialisation (COLMAP), with `point_colors` (P, 3)."""
    point_colors: Tensor | None = None
    background: tuple[float, float, float] | None = None
    """The colour transparent pixels were composited on, when the images had alpha."""

    def __len__(self) -> int:
        return self.images.shape[0]


def is_nerf_synthetic(root: str | Path) -> bool:
    return (Path(root) / "transforms_train.json").is_file()


def _image_path(root: Path, file_path: str) -> Path:
    p = root / file_path
    if p.suffix.lower() in (".png", ".jpg", ".jpeg") and p.is_file():
        return p
    for ext in (".png", ".jpg", ".jpeg"):
        q = p.with_name(p.name + ext)
        if q.is_file():
            return q
    raise UserError(f"image '{file_path}' listed in {root} is missing: check the scene folder is complete")


def load_image(path: Path, downscale: int, background: tuple[float, float, float]) -> np.ndarray:
    """An image as float32 RGB (H, W, 3), alpha composited on `background`, shrunk by `downscale`."""
    try:
        img = Image.open(path)
        img = img.convert("RGBA") if img.mode in ("RGBA", "LA", "P") else img.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        from utils.errors import short_reason

        raise UserError(f"cannot read image {path} ({short_reason(err, 80)}): the file is corrupt or not an image; "
                        "replace it") from None
    if downscale > 1:
        img = img.resize((img.width // downscale, img.height // downscale), Image.Resampling.LANCZOS)
    a = np.asarray(img, dtype=np.float32) / 255.0
    if a.shape[-1] == 4:
        a = a[..., :3] * a[..., 3:] + np.asarray(background, dtype=np.float32) * (1.0 - a[..., 3:])
    return a


def load_nerf_synthetic(root: str | Path, split: str = "train", downscale: int = 1,
                        background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> PosedImages:
    """Load `transforms_{split}.json` of a NeRF-synthetic scene."""
    root = Path(root)
    meta_path = root / f"transforms_{split}.json"
    if not meta_path.is_file():
        raise UserError(f"{meta_path} not found: a NeRF-synthetic scene holds transforms_train.json and "
                        "transforms_test.json next to its image folders")
    fields = 'camera_angle_x, frames: [{file_path, transform_matrix: 4x4}]'
    with parsing(meta_path, "NeRF-synthetic transforms file", fields):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("the top level is not a JSON object")
        frames = meta.get("frames", [])
        float(meta["camera_angle_x"])
        if not isinstance(frames, list):
            raise ValueError("'frames' is not a list")
    if not frames:
        raise UserError(f"{meta_path} lists no frames")
    images, c2ws, names = [], [], []
    for i, frame in enumerate(frames):
        with parsing(meta_path, f"NeRF-synthetic transforms file (frame {i})", fields):
            path = _image_path(root, str(frame["file_path"]))
            c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)
            if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
                raise ValueError(f"transform_matrix is not a finite 4x4 matrix (shape {c2w.shape})")
        images.append(load_image(path, downscale, background))
        c2ws.append(c2w)
        names.append(path.name)
    h, w = images[0].shape[:2]
    if any(im.shape[:2] != (h, w) for im in images):
        raise UserError(f"images of {meta_path} differ in size: all views of a split must share one size")
    # focal length from the horizontal field of view of the full-size image, then scaled
    fov_x = float(meta["camera_angle_x"])
    fx = 0.5 * w / math.tan(0.5 * fov_x)
    fy = 0.5 * h / math.tan(0.5 * float(meta["camera_angle_y"])) if "camera_angle_y" in meta else fx
    cx, cy = float(meta.get("cx", w * downscale / 2)) / downscale, float(meta.get("cy", h * downscale / 2)) / downscale
    K = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=torch.float32)
    c2w = opengl_to_opencv(torch.from_numpy(np.stack(c2ws)))
    viewmats = torch.linalg.inv(c2w).float()
    cams = Cameras(viewmats, K.expand(len(frames), 3, 3).clone(), w, h)
    return PosedImages(torch.from_numpy(np.stack(images)), cams, names, background=tuple(background))

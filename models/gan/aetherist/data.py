"""Training data of the triplane GANs: images with their 25-value camera labels.

- `PrimitivesDataset` ("primitives", the built-in set): multi-view renders, made here by exact ray
  casting, of random textured primitives (spheres and boxes inside the triplanes' box, with a
  view-independent procedural texture) from random cameras on the sphere of the preset's radius.
  Each item also holds its depth (distance along each ray) and mask, so consistency metrics have
  ground truth; items `2k` and `2k + 1` are two views of one scene.
- `CameraFolderDataset`: a folder of images with EG3D's `dataset.json`
  ({"labels": [["img00000000.png", [25 floats]], ...]}).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor

from utils.errors import UserError
from utils.rendering.camera_labels import camera_label, create_camera_pose, label_cameras, normalized_intrinsics
from utils.rendering.cameras import camera_rays

__all__ = ["render_primitive", "PrimitivesDataset", "CameraFolderDataset", "load_camera_dataset"]


def _hit_sphere(o: Tensor, d: Tensor, centre: Tensor, r: float) -> Tensor:
    oc = o - centre
    b = (oc * d).sum(-1)
    c = (oc * oc).sum(-1) - r * r
    disc = b * b - c
    t = -b - torch.sqrt(disc.clamp_min(0))
    return torch.where((disc > 0) & (t > 0), t, torch.full_like(t, float("inf")))


def _hit_box(o: Tensor, d: Tensor, centre: Tensor, half: Tensor) -> Tensor:
    inv = 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t0, t1 = (centre - half - o) * inv, (centre + half - o) * inv
    near, far = torch.minimum(t0, t1).amax(-1), torch.maximum(t0, t1).amin(-1)
    return torch.where((far > near) & (near > 0), near, torch.full_like(near, float("inf")))


def render_primitive(scene: dict[str, Tensor], label: Tensor, resolution: int) -> tuple[Tensor, Tensor, Tensor]:
    """(image (3, R, R) in [-1, 1], depth (1, R, R), mask (1, R, R)) of a scene seen through a camera label."""
    origins, dirs = camera_rays(label_cameras(label[None], resolution))
    o, d = origins[0].reshape(-1, 3), dirs[0].reshape(-1, 3)
    if scene["kind"] == 0:
        t = _hit_sphere(o, d, scene["centre"], float(scene["size"][0]))
    else:
        t = _hit_box(o, d, scene["centre"], scene["size"])
    hit = torch.isfinite(t)
    p = o + d * torch.where(hit, t, torch.zeros_like(t))[:, None]
    # a texture of the surface point (view-independent): stripes and a colour gradient
    q = p - scene["centre"]
    stripes = torch.sin(scene["freq"] * (q @ scene["axis"]))[:, None]
    colour = torch.tanh(scene["base"] + scene["tint"] * stripes + 0.8 * q)
    image = torch.where(hit[:, None], colour, scene["background"].expand_as(colour))
    far = t.new_tensor(float(torch.linalg.norm(label[:16].reshape(4, 4)[:3, 3])) + 1.0)
    depth = torch.where(hit, t, far)
    to = lambda x: x.reshape(resolution, resolution, -1).permute(2, 0, 1)  # noqa: E731
    return to(image), to(depth[:, None]), to(hit[:, None].float())


class PrimitivesDataset(torch.utils.data.Dataset):
    """`num_scenes` scenes x `views` views, rendered once at `resolution` (deterministic in `seed`)."""

    def __init__(self, num_scenes: int = 32, resolution: int = 64, views: int = 2, seed: int = 0,
                 radius: float = 2.7, fov_degrees: float = 18.837, yaw_range: float = 30.0,
                 pitch_range: float = 15.0):
        if num_scenes < 1 or views < 1 or resolution < 8:
            raise UserError("the built-in dataset needs at least one scene, one view and 8 px")
        g = torch.Generator().manual_seed(seed)
        rand = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
        K = normalized_intrinsics(fov_degrees)
        self.items: list[dict[str, Tensor]] = []
        for _ in range(num_scenes):
            kind = int(rand(1) < 0.5)
            scene = {"kind": kind, "centre": (rand(3) - 0.5) * 0.2,
                     "size": (torch.full((3,), 0.25) + rand(3) * 0.1) if kind else (0.3 + rand(1) * 0.12),
                     "axis": torch.nn.functional.normalize(rand(3) - 0.5, dim=0), "freq": 3 + rand(1) * 5,
                     "base": (rand(3) - 0.5) * 2, "tint": rand(3), "background": (rand(3) - 0.5) * 0.4 - 0.5}
            for _ in range(views):
                el = (rand(1) * 2 - 1) * pitch_range
                az = (rand(1) * 2 - 1) * yaw_range
                label = camera_label(create_camera_pose(el, az, radius), K)[0]
                image, depth, mask = render_primitive(scene, label, resolution)
                self.items.append({"image": image, "camera": label, "depth": depth, "mask": mask})
        self.resolution, self.views = resolution, views

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return self.items[i]


class CameraFolderDataset(torch.utils.data.Dataset):
    """Images of a folder with their camera labels from EG3D's dataset.json, resized to `resolution`."""

    def __init__(self, folder: str | Path, resolution: int):
        from PIL import Image

        folder = Path(folder)
        meta = folder / "dataset.json"
        if not meta.is_file():
            raise UserError(f"{folder} has no dataset.json: a 3D-aware GAN needs a camera label per image, in "
                            "EG3D's format {\"labels\": [[\"file.png\", [25 numbers]], ...]}")
        try:
            labels = json.loads(meta.read_text())["labels"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{meta} is not EG3D's format: expected {{\"labels\": [[\"file.png\", [25 numbers]], ...]}}"
                            ) from None
        self.items = []
        for entry in labels:
            if not (isinstance(entry, list) and len(entry) == 2 and len(entry[1]) == 25):
                raise UserError(f"{meta}: each label is [file, 25 numbers]; got {str(entry)[:60]}")
            path = folder / entry[0]
            if not path.is_file():
                raise UserError(f"{meta} names {entry[0]}, which is not in {folder}")
            self.items.append((path, torch.tensor(entry[1], dtype=torch.float32)))
        if not self.items:
            raise UserError(f"{meta} lists no images")
        self.resolution, self._image = resolution, Image

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        import numpy as np

        path, label = self.items[i]
        img = self._image.open(path).convert("RGB").resize((self.resolution, self.resolution),
                                                           self._image.Resampling.LANCZOS)
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 127.5 - 1
        return {"image": x, "camera": label}


def load_camera_dataset(name: str, resolution: int, radius: float = 2.7, fov_degrees: float = 18.837,
                        seed: int = 0) -> torch.utils.data.Dataset:
    """'primitives' (or 'builtin') for the built-in multi-view set, else a folder with dataset.json."""
    if name in ("primitives", "builtin", "digits"):
        return PrimitivesDataset(num_scenes=32, resolution=resolution, seed=seed, radius=radius,
                                 fov_degrees=fov_degrees)
    return CameraFolderDataset(name, resolution)


del math
